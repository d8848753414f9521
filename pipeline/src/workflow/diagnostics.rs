//! Problems found in a workflow file, reported all at once as a compiler
//! reports them: `file:line:col: key.path: message`.

use std::fmt;
use std::path::PathBuf;

use crate::workflow::yaml::Pos;

/// One problem in a workflow file.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// Where, when known.
    pub pos: Option<Pos>,
    /// Dotted key path (`stages.train.with.epochs`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Every problem found in a workflow file.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostics {
    /// The workflow file.
    pub file: PathBuf,
    /// The problems, in file order.
    pub items: Vec<Diagnostic>,
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.items.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match d.pos {
                Some(p) => write!(f, "{}:{}:{}: ", self.file.display(), p.line, p.col)?,
                None => write!(f, "{}: ", self.file.display())?,
            }
            if !d.path.is_empty() {
                write!(f, "{}: ", d.path)?;
            }
            write!(f, "{}", d.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}
