//! Which filesystem a path is on, from /proc/self/mountinfo: the run
//! records choose SQLite's journal by it (WAL needs memory shared between
//! processes, which network filesystems cannot give).

use std::path::Path;

/// The type of the filesystem `dir` is on, when it is a network or
/// cluster filesystem.
pub(crate) fn network_filesystem(dir: &Path) -> Option<String> {
    const NETWORK: [&str; 10] = [
        "nfs",
        "nfs4",
        "lustre",
        "gpfs",
        "beegfs",
        "cifs",
        "smb3",
        "ceph",
        "glusterfs",
        "panfs",
    ];
    let dir = dir.canonicalize().ok()?;
    let fstype = mount_type(&dir, &std::fs::read_to_string("/proc/self/mountinfo").ok()?)?;
    let base = fstype.strip_prefix("fuse.").unwrap_or(&fstype);
    NETWORK.contains(&base).then_some(fstype)
}

/// The filesystem type of the longest mount point in `mountinfo` (the
/// format of /proc/self/mountinfo) that contains the absolute path `dir`.
fn mount_type(dir: &Path, mountinfo: &str) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for line in mountinfo.lines() {
        // id parent major:minor root mount-point options... - fstype source options
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(point), Some(sep)) = (fields.get(4), fields.iter().position(|f| *f == "-"))
        else {
            continue;
        };
        let Some(fstype) = fields.get(sep + 1) else {
            continue;
        };
        let point = point.replace("\\040", " ");
        if dir.starts_with(&point) && best.as_ref().is_none_or(|(len, _)| point.len() >= *len) {
            best = Some((point.len(), fstype.to_string()));
        }
    }
    best.map(|(_, t)| t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mount_holding_a_path_is_the_longest_that_contains_it() {
        let mountinfo = "\
22 1 0:21 / / rw,relatime - overlay overlay rw
30 22 0:40 / /scratch rw,relatime - lustre 10.0.0.1@o2ib:/fs rw
31 22 0:41 / /home/u\\040docs rw - nfs4 srv:/home rw
32 30 0:42 / /scratch/local rw - xfs /dev/sdb rw
";
        let at = |p: &str| mount_type(Path::new(p), mountinfo);
        assert_eq!(at("/scratch/run/wd").as_deref(), Some("lustre"));
        assert_eq!(at("/scratch/local/wd").as_deref(), Some("xfs"));
        assert_eq!(at("/home/u docs/wd").as_deref(), Some("nfs4"));
        assert_eq!(at("/tmp/wd").as_deref(), Some("overlay"));
        // The test's own temporary directory is local.
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(network_filesystem(dir.path()), None);
    }
}
