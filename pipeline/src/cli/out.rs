//! Command output: buffered stdout that ends quietly on a closed pipe.

thread_local! {
    /// Command output, buffered: `pipeline plan` on 100,000 stages writes
    /// 200,000 lines, and stdout flushes at every newline.
    pub static OUT: std::cell::RefCell<std::io::BufWriter<std::io::Stdout>> =
        std::cell::RefCell::new(std::io::BufWriter::with_capacity(1 << 16, std::io::stdout()));
}

/// Ends quietly when stdout is a closed pipe (`pipeline show | head`).
pub fn out_result(r: std::io::Result<()>) {
    if let Err(e) = r {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// `println!` into the buffered stdout.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        $crate::cli::out::OUT.with(|o| $crate::cli::out::out_result(writeln!(o.borrow_mut(), $($arg)*)));
    }};
}

pub fn flush_out() {
    use std::io::Write as _;
    OUT.with(|o| out_result(o.borrow_mut().flush()));
}
