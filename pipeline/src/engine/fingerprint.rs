//! Content hashes of inputs and outputs, and stage fingerprints.
//!
//! Files are hashed with BLAKE3 (memory-mapped, multi-threaded for big files)
//! and the hash is kept in the records' file cache under (path, size, mtime,
//! inode): an unchanged 100 GB input costs one `stat`, not a read. A
//! directory's hash covers the relative paths and hashes of every file in it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::records::{FileHash, Records};
use crate::workflow::Reproducible;
use crate::Error;

/// Hashes a file, through the stat cache.
pub fn hash_file(records: &Records, path: &Path) -> Result<(u64, String), Error> {
    let meta = std::fs::metadata(path).map_err(Error::io("failed to stat", path))?;
    let key = path.to_string_lossy();
    let mtime_ns = meta.mtime() * 1_000_000_000 + meta.mtime_nsec();
    if let Some(h) = records.cached_hash(&key, meta.len(), mtime_ns, meta.ino())? {
        return Ok((meta.len(), h));
    }
    let mut hasher = blake3::Hasher::new();
    if meta.len() > 1 << 20 {
        hasher
            .update_mmap_rayon(path)
            .map_err(Error::io("failed to read", path))?;
    } else {
        hasher.update(&std::fs::read(path).map_err(Error::io("failed to read", path))?);
    }
    let h = hasher.finalize().to_hex().to_string();
    records.store_hash(&key, meta.len(), mtime_ns, meta.ino(), &h)?;
    Ok((meta.len(), h))
}

/// Every file under `dir` (recursively), sorted, as paths relative to `dir`.
fn walk(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let full = dir.join(&rel);
        for entry in std::fs::read_dir(&full).map_err(Error::io("failed to list", &full))? {
            let entry = entry.map_err(Error::io("failed to list", &full))?;
            let kind = entry
                .file_type()
                .map_err(Error::io("failed to stat", &entry.path()))?;
            let r = rel.join(entry.file_name());
            if kind.is_dir() {
                stack.push(r);
            } else if kind.is_file() {
                out.push(r);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Hashes a file or a directory; for a directory also returns each file
/// (path joined to `path`, size, hash).
pub fn hash_path(records: &Records, path: &Path) -> Result<(String, Vec<FileHash>), Error> {
    let meta = std::fs::metadata(path).map_err(Error::io("failed to stat", path))?;
    if !meta.is_dir() {
        let (size, h) = hash_file(records, path)?;
        return Ok((
            h.clone(),
            vec![FileHash {
                path: path.to_string_lossy().into_owned(),
                bytes: size,
                blake3: h,
            }],
        ));
    }
    let mut hasher = blake3::Hasher::new();
    let mut files = Vec::new();
    for rel in walk(path)? {
        let full = path.join(&rel);
        let (size, h) = hash_file(records, &full)?;
        hasher.update(rel.to_string_lossy().as_bytes());
        hasher.update(&[0]);
        hasher.update(h.as_bytes());
        files.push(FileHash {
            path: full.to_string_lossy().into_owned(),
            bytes: size,
            blake3: h,
        });
    }
    Ok((hasher.finalize().to_hex().to_string(), files))
}

/// What a fingerprint covers of a stage's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The configuration it runs with (its typed config with every default):
    /// today's fingerprints.
    Resolved,
    /// The `with:` block as written: how versions before 2 of the records
    /// computed it. A state recorded then that still matches is fresh, and
    /// is upgraded rather than rerun.
    Written,
}

/// The fingerprint of a stage: its kind and version, its configuration on
/// `basis` (canonical JSON, keys sorted), the reproducibility mode, the hashes
/// of its external inputs and the output hashes of the stages it depends on.
pub fn fingerprint(
    basis: Basis,
    kind: &str,
    config: &Value,
    reproducible: Reproducible,
    inputs: &[(String, String)],
    upstream: &[(String, String)],
) -> String {
    let tag: &[u8] = match basis {
        Basis::Resolved => b"sciflow-stage-v2\0",
        Basis::Written => b"sciflow-stage-v1\0",
    };
    let mut h = blake3::Hasher::new();
    h.update(tag);
    h.update(kind.as_bytes());
    h.update(&[0]);
    // serde_json's map keeps keys sorted, so this serialisation is canonical.
    h.update(config.to_string().as_bytes());
    // Only a non-default mode enters, so fingerprints recorded before modes
    // existed still match.
    if reproducible != Reproducible::Native {
        h.update(b"\0reproducible=");
        h.update(reproducible.name().as_bytes());
    }
    for (name, hash) in inputs.iter().chain(upstream) {
        h.update(&[0]);
        h.update(name.as_bytes());
        h.update(&[1]);
        h.update(hash.as_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// One difference between two configurations.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigChange {
    /// Dotted path of the key (`with.model.width`).
    pub path: String,
    /// Its value before (`None`: unset).
    pub old: Option<Value>,
    /// Its value now (`None`: unset).
    pub new: Option<Value>,
}

impl ConfigChange {
    /// Whether this change is about `other`'s key or a key around or inside it.
    pub fn overlaps(&self, other: &ConfigChange) -> bool {
        let inside = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}."));
        inside(&self.path, &other.path) || inside(&other.path, &self.path)
    }
}

impl std::fmt::Display for ConfigChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<Value>| v.as_ref().map_or("(unset)".to_string(), Value::to_string);
        write!(
            f,
            "{}: {} -> {}",
            self.path,
            show(&self.old),
            show(&self.new)
        )
    }
}

/// Differences between two configs, key by key, under `path`.
pub fn config_diff(old: &Value, new: &Value, path: &str, out: &mut Vec<ConfigChange>) {
    let change = |path: String, old: Option<&Value>, new: Option<&Value>| ConfigChange {
        path,
        old: old.cloned(),
        new: new.cloned(),
    };
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => config_diff(x, y, &p, out),
                    (x, y) if x.is_some() || y.is_some() => out.push(change(p, x, y)),
                    _ => {}
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                config_diff(x, y, &format!("{path}.{i}"), out);
            }
        }
        (a, b) if a != b => out.push(change(path.to_string(), Some(a), Some(b))),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn config_diff_names_changed_keys_with_values() {
        let mut out = Vec::new();
        config_diff(
            &json!({"epochs": 6, "model": {"width": 16}, "lr": 0.1}),
            &json!({"epochs": 10, "model": {"width": 16}, "seed": 1}),
            "with",
            &mut out,
        );
        assert_eq!(
            out.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec![
                "with.epochs: 6 -> 10",
                "with.lr: 0.1 -> (unset)",
                "with.seed: (unset) -> 1"
            ]
        );
    }

    #[test]
    fn fingerprint_covers_each_part() {
        const N: Reproducible = Reproducible::Native;
        let base = fingerprint(
            Basis::Resolved,
            "k@1",
            &json!({"a": 1}),
            N,
            &[("f".into(), "h".into())],
            &[],
        );
        assert_ne!(
            base,
            fingerprint(
                Basis::Resolved,
                "k@2",
                &json!({"a": 1}),
                N,
                &[("f".into(), "h".into())],
                &[]
            )
        );
        assert_ne!(
            base,
            fingerprint(
                Basis::Resolved,
                "k@1",
                &json!({"a": 2}),
                N,
                &[("f".into(), "h".into())],
                &[]
            )
        );
        assert_ne!(
            base,
            fingerprint(
                Basis::Resolved,
                "k@1",
                &json!({"a": 1}),
                N,
                &[("f".into(), "h2".into())],
                &[]
            )
        );
        assert_ne!(
            base,
            fingerprint(
                Basis::Resolved,
                "k@1",
                &json!({"a": 1}),
                N,
                &[("f".into(), "h".into())],
                &[("u".into(), "x".into())]
            )
        );
        assert_ne!(
            base,
            fingerprint(
                Basis::Resolved,
                "k@1",
                &json!({"a": 1}),
                Reproducible::Portable,
                &[("f".into(), "h".into())],
                &[]
            )
        );
        assert_eq!(
            base,
            fingerprint(
                Basis::Resolved,
                "k@1",
                &json!({"a": 1}),
                N,
                &[("f".into(), "h".into())],
                &[]
            )
        );
        // The default mode adds nothing to the fingerprint of a `with:` block
        // as written: states recorded before modes existed still match it.
        let written = fingerprint(
            Basis::Written,
            "k@1",
            &json!({"a": 1}),
            N,
            &[("f".into(), "h".into())],
            &[],
        );
        let mut before = blake3::Hasher::new();
        before.update(b"sciflow-stage-v1\0k@1\0{\"a\":1}\0f\x01h");
        assert_eq!(written, before.finalize().to_hex().to_string());
        // Today's fingerprint is of another version: the two never collide.
        assert_ne!(base, written);
    }

    #[test]
    fn the_stat_cache_avoids_rereading_and_sees_changes() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::open(dir.path()).unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("a.txt"), b"one").unwrap();
        std::fs::write(data.join("b.txt"), b"two").unwrap();
        let (h1, files) = hash_path(&records, &data).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].blake3, blake3::hash(b"one").to_hex().to_string());
        // A cached entry is trusted while the stat matches: poison it and see it used.
        let a = data.join("a.txt");
        let meta = std::fs::metadata(&a).unwrap();
        let mtime = meta.mtime() * 1_000_000_000 + meta.mtime_nsec();
        records
            .store_hash(&a.to_string_lossy(), 3, mtime, meta.ino(), "poisoned")
            .unwrap();
        assert_eq!(hash_file(&records, &a).unwrap().1, "poisoned");
        // A changed size invalidates it.
        std::fs::write(&a, b"three").unwrap();
        assert_eq!(
            hash_file(&records, &a).unwrap().1,
            blake3::hash(b"three").to_hex().to_string()
        );
        let (h2, _) = hash_path(&records, &data).unwrap();
        assert_ne!(h1, h2);
    }
}
