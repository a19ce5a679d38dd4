//! Any string as a path below a directory, for the filesystem backends (key-value
//! keys, blob object names): bytes outside `[A-Za-z0-9_-]` become `%XX`, so no name
//! can climb out of its directory, hide as a dot-file or clash with another.
//!
//! An encoded name longer than a file name may be is split: every full
//! [`NAME_MAX`]-byte piece but the last becomes a directory named `+<piece>` (`+`
//! never appears in an encoded name), and the last piece names the file. A name
//! that fits one file name is never split.
//!
//! A file is written whole or not at all, by one blocking job (a temporary file
//! with a random name, then a rename), so a caller that gives up half-way (a
//! deadline, a failing batch) leaves neither half a value nor a stray temporary.

use std::io;
use std::path::{Path, PathBuf};

use crate::budget::Budget;

/// The longest piece: with its `+`, a directory name of 255 bytes, the limit of
/// most filesystems.
const NAME_MAX: usize = 254;

/// How often a write retries when a concurrent `prune` removed a directory it
/// had just made.
const ATTEMPTS: usize = 8;

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
/// not names. A missing `dir` holds none. Each name is charged to `budget` as it
/// is found: a listing larger than the budget is an error, not a host buffer.
pub async fn list(dir: &Path, budget: &Budget) -> io::Result<Vec<String>> {
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
                budget.charge(name.len() as u64, "the listing").map_err(io::Error::other)?;
                names.push(name);
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Writes the file `path` (from [`path`] below `base`, which must exist) with
/// what `fill` writes, atomically: readers see the old file or the new one.
pub async fn write(
    base: &Path,
    path: &Path,
    fill: impl Fn(&mut std::fs::File) -> io::Result<()> + Send + 'static,
) -> io::Result<()> {
    in_place(base, path, move |path| {
        let dir = path.parent().expect("a name's file is inside a directory");
        let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
        fill(tmp.as_file_mut())?;
        tmp.persist(path).map(|_| ()).map_err(|e| e.error)
    })
    .await
}

/// Renames `from` to `to` (from [`path`] below `base`, which must exist).
pub async fn rename(base: &Path, from: &Path, to: &Path) -> io::Result<()> {
    let from = from.to_path_buf();
    in_place(base, to, move |to| std::fs::rename(&from, to)).await
}

/// Runs `op` on `path` (from [`path`] below `base`) as one blocking job, after
/// making the continuation directories between them one level at a time (so a
/// `base` removed meanwhile is not made again); again when a concurrent `prune`
/// removed one of them in between, as long as `base` is still there.
async fn in_place(base: &Path, path: &Path, op: impl Fn(&Path) -> io::Result<()> + Send + 'static) -> io::Result<()> {
    let (base, path) = (base.to_path_buf(), path.to_path_buf());
    let job = tokio::task::spawn_blocking(move || {
        let parent = path.parent().expect("a name's file is inside a directory");
        let below = parent.strip_prefix(&base).expect("the path is below its base");
        let attempt = || {
            let mut dir = base.clone();
            for piece in below.components() {
                dir.push(piece);
                match std::fs::create_dir(&dir) {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                    _ => {}
                }
            }
            op(&path)
        };
        let mut attempts = 1;
        loop {
            match attempt() {
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < ATTEMPTS && base.is_dir() => attempts += 1,
                done => return done,
            }
        }
    });
    job.await.map_err(io::Error::other)?
}

/// Removes the file `path` (from [`path`] below `dir`), if it is there, and the
/// continuation directories that leaves empty.
pub async fn remove(dir: &Path, path: &Path) -> io::Result<()> {
    match tokio::fs::remove_file(path).await {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    prune(dir, path).await;
    Ok(())
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
        assert_eq!(parts.len(), 900usize.div_ceil(NAME_MAX), "{parts:?}");
        assert!(parts.iter().all(|n| n.len() <= NAME_MAX + 1), "{parts:?}");
        let (file, dirs) = parts.split_last().unwrap();
        assert!(dirs.iter().all(|n| n.starts_with(CONTINUED)) && !file.starts_with(CONTINUED), "{parts:?}");
        let joined: String = parts.iter().map(|n| n.trim_start_matches(CONTINUED)).collect();
        assert_eq!(decode(&joined).as_deref(), Some(name.as_str()));
        assert_eq!(super::path(Path::new("/kv/b"), "short"), PathBuf::from("/kv/b/short"));
        // A name that fits one file name stays one file, as it always was.
        let fits = "k".repeat(NAME_MAX);
        assert_eq!(super::path(Path::new("/b"), &fits), Path::new("/b").join(&fits));
        assert_eq!(super::path(Path::new("/b"), &format!("{fits}k")).iter().count(), 4);
    }

    #[tokio::test]
    async fn long_names_are_listed_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let names = ["k".repeat(700), "k".repeat(600) + "/x", "short".to_string()];
        for name in &names {
            let bytes = name.clone().into_bytes();
            write(dir.path(), &path(dir.path(), name), move |f| std::io::Write::write_all(f, &bytes)).await.unwrap();
            assert_eq!(std::fs::read(path(dir.path(), name)).unwrap(), name.as_bytes());
        }
        // A temporary file is not a name.
        tokio::fs::write(dir.path().join(".tmp-1"), b"").await.unwrap();
        let mut sorted = names.to_vec();
        sorted.sort();
        assert_eq!(list(dir.path(), &Budget::new(u64::MAX)).await.unwrap(), sorted);
        let over = list(dir.path(), &Budget::new(1000)).await.unwrap_err().to_string();
        assert!(over.contains("the listing"), "{over}");

        for name in &names {
            let file = path(dir.path(), name);
            tokio::fs::remove_file(&file).await.unwrap();
            prune(dir.path(), &file).await;
        }
        assert!(list(dir.path(), &Budget::new(u64::MAX)).await.unwrap().is_empty());
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, [".tmp-1"], "only the dot-file is left");
    }

    proptest::proptest! {
        /// Any non-empty name is a path strictly below the directory whose every
        /// piece is a safe file name of at most 255 bytes, and which decodes back.
        #[test]
        fn any_name_is_safe_pieces_that_decode_back(name in "\\PC{1,400}|.{1,40}") {
            let dir = Path::new("/kv/b");
            let path = path(dir, &name);
            let parts: Vec<&str> = path.strip_prefix(dir).unwrap().iter().map(|n| n.to_str().unwrap()).collect();
            proptest::prop_assert!(!parts.is_empty());
            let (file, dirs) = parts.split_last().unwrap();
            proptest::prop_assert!(!file.starts_with(CONTINUED) && !file.starts_with('.'));
            for piece in &parts {
                proptest::prop_assert!(!piece.is_empty() && piece.len() <= NAME_MAX + 1 && *piece != "..");
            }
            proptest::prop_assert!(dirs.iter().all(|d| d.starts_with(CONTINUED)));
            let joined: String = parts.iter().map(|n| n.trim_start_matches(CONTINUED)).collect();
            proptest::prop_assert_eq!(decode(&joined), Some(name));
        }
    }
}
