//! Any string as a path below a directory, for the filesystem backends (key-value
//! keys, blob object names): bytes outside `[A-Za-z0-9_-]` become `%XX`, so no name
//! can climb out of its directory, hide as a dot-file or clash with another.
//!
//! An encoded name longer than a file name may be is split: every full
//! [`NAME_MAX`]-byte piece but the last becomes a directory named `+<piece>` (`+`
//! never appears in an encoded name), and the last piece names the file.

use std::io;
use std::path::{Path, PathBuf};

/// The longest file name written: most filesystems allow 255 bytes.
const NAME_MAX: usize = 200;

/// Starts the name of a directory holding the rest of longer names.
const CONTINUED: char = '+';

/// `name` as one file name (no splitting): for short identifiers such as a
/// bucket's or a container's.
pub fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn decode(file: &str) -> Option<String> {
    let mut out = Vec::new();
    let mut bytes = file.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// Where the file for `name` lives below `dir`.
pub fn path(dir: &Path, name: &str) -> PathBuf {
    let encoded = encode(name);
    let mut path = dir.to_path_buf();
    let mut rest = encoded.as_str();
    while rest.len() > NAME_MAX {
        let (piece, tail) = rest.split_at(NAME_MAX);
        path.push(format!("{CONTINUED}{piece}"));
        rest = tail;
    }
    path.push(rest);
    path
}

/// Every name with a file below `dir`, sorted; dot-files (temporary files) are
/// not names. A missing `dir` holds none.
pub async fn list(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        while let Some(entry) = entries.next_entry().await? {
            let Some(file) = entry.file_name().to_str().map(str::to_string) else { continue };
            if let Some(piece) = file.strip_prefix(CONTINUED) {
                pending.push((entry.path(), format!("{prefix}{piece}")));
            } else if !file.starts_with('.')
                && let Some(name) = decode(&format!("{prefix}{file}"))
            {
                names.push(name);
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Writes `bytes` to a new temporary file in the directory of `path` (from
/// [`path`], which may need continuation directories), to be renamed to `path`.
pub async fn create_beside(path: &Path, bytes: &[u8]) -> io::Result<PathBuf> {
    let dir = path.parent().expect("a name's file is inside a directory");
    let tmp = dir.join(format!(".tmp-{}", unique()));
    loop {
        tokio::fs::create_dir_all(dir).await?;
        match tokio::fs::write(&tmp, bytes).await {
            // A concurrent `prune` removed the directory just made: make it again.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            written => return written.map(|()| tmp),
        }
    }
}

/// A name part unique within this host's run, for temporary files.
fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// After the file at `path` (from [`path`]) is gone: removes the continuation
/// directories it leaves empty, up to `dir`.
pub async fn prune(dir: &Path, path: &Path) {
    for parent in path.ancestors().skip(1).take_while(|d| *d != dir) {
        // Removing a directory that is not empty fails, which ends the climb.
        if tokio::fs::remove_dir(parent).await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_as_safe_file_names() {
        for name in ["plain", "with space", "a/b", "..", "ünï", "%41", "+x"] {
            let file = encode(name);
            assert!(!file.contains('/') && !file.starts_with('.') && !file.starts_with(CONTINUED), "{file}");
            assert_eq!(decode(&file).as_deref(), Some(name));
        }
    }

    #[test]
    fn long_names_continue_in_directories() {
        let name = "é".repeat(150); // 300 bytes, 900 encoded
        let path = path(Path::new("/kv/b"), &name);
        let parts: Vec<&str> = path.iter().skip(3).map(|n| n.to_str().unwrap()).collect();
        assert_eq!(parts.len(), 5, "{parts:?}");
        assert!(parts.iter().all(|n| n.len() <= NAME_MAX + 1), "{parts:?}");
        assert!(parts[..4].iter().all(|n| n.starts_with(CONTINUED)) && !parts[4].starts_with(CONTINUED));
        let joined: String = parts.iter().map(|n| n.trim_start_matches(CONTINUED)).collect();
        assert_eq!(decode(&joined).as_deref(), Some(name.as_str()));
        assert_eq!(super::path(Path::new("/kv/b"), "short"), PathBuf::from("/kv/b/short"));
    }

    #[tokio::test]
    async fn long_names_are_listed_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let names = ["k".repeat(500), "k".repeat(450) + "/x", "short".to_string()];
        for name in &names {
            let file = path(dir.path(), name);
            tokio::fs::create_dir_all(file.parent().unwrap()).await.unwrap();
            tokio::fs::write(&file, name).await.unwrap();
        }
        tokio::fs::write(dir.path().join(".tmp-1"), b"").await.unwrap();
        let mut sorted = names.to_vec();
        sorted.sort();
        assert_eq!(list(dir.path()).await.unwrap(), sorted);

        for name in &names {
            let file = path(dir.path(), name);
            tokio::fs::remove_file(&file).await.unwrap();
            prune(dir.path(), &file).await;
        }
        assert!(list(dir.path()).await.unwrap().is_empty());
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, [".tmp-1"], "only the dot-file is left");
    }
}
