//! Container and object names as file names: percent-encoded, so that any UTF-8
//! name round-trips and none can be `.`, `..`, contain `/`, or start with `.` (the
//! staging directory's mark).
//!
//! An object name too long for one file name continues in directories: every
//! full piece of [`NAME_MAX`] encoded bytes but the last names a directory
//! `+<piece>` (`+` is always encoded, so no object's file starts with it), and the
//! last piece names the file. A name that fits one file name is never split.

use std::path::{Path, PathBuf};

/// The longest piece: with its `+`, a directory name of 255 bytes, the limit of
/// most filesystems.
const NAME_MAX: usize = 254;

/// How often a move retries when a concurrent delete pruned a directory it had
/// just made.
const ATTEMPTS: usize = 8;

/// Starts the name of a directory holding the rest of longer names.
const CONTINUED: char = '+';

/// `name` as file names: one, or more for a long name.
fn pieces(name: &str) -> Result<Vec<String>, String> {
    if name.is_empty() {
        return Err("names cannot be empty".into());
    }
    // `.` is plain inside a piece, never at its start.
    let encode = |byte: u8, starts_piece: bool| {
        let plain =
            byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'~') || (byte == b'.' && !starts_piece);
        if plain { (byte as char).to_string() } else { format!("%{byte:02X}") }
    };
    let mut pieces = vec![String::new()];
    for byte in name.bytes() {
        let piece = pieces.last().expect("there is a piece");
        let mut encoded = encode(byte, piece.is_empty());
        if piece.len() + encoded.len() > NAME_MAX {
            pieces.push(String::new());
            encoded = encode(byte, true);
        }
        pieces.last_mut().expect("there is a piece").push_str(&encoded);
    }
    Ok(pieces)
}

/// A container's directory name.
pub fn encode(name: &str) -> Result<String, String> {
    let pieces = pieces(name)?;
    match <[String; 1]>::try_from(pieces) {
        Ok([one]) => Ok(one),
        Err(_) => Err(format!("the name `{name}` is too long for a container")),
    }
}

/// Where the file of object `name` lives in container directory `dir`.
pub fn object_path(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let mut pieces = pieces(name)?;
    let file = pieces.pop().expect("at least one piece");
    let mut path = dir.to_path_buf();
    for piece in pieces {
        path.push(format!("{CONTINUED}{piece}"));
    }
    path.push(file);
    Ok(path)
}

fn decode(file: &str) -> Option<String> {
    let bytes = file.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = file.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The names of the objects in container directory `dir`, sorted.
pub fn list(dir: &Path) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            // A continuation directory a concurrent delete just pruned.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !prefix.is_empty() => continue,
            Err(e) => return Err(format!("list {}: {e}", dir.display())),
        };
        for entry in entries {
            let entry = entry.map_err(|e| e.to_string())?;
            let Some(file) = entry.file_name().to_str().map(str::to_string) else { continue };
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            match file.strip_prefix(CONTINUED) {
                Some(piece) if is_dir => pending.push((entry.path(), format!("{prefix}{piece}"))),
                None if !is_dir => names.extend(decode(&format!("{prefix}{file}"))),
                _ => {}
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Moves a finished file to an object's path in container directory `dir`,
/// making the directories a long name continues in, one level at a time (so a
/// container deleted meanwhile is not made again).
pub fn place(dir: &Path, from: &Path, to: &Path) -> std::io::Result<()> {
    let parent = to.parent().expect("an object's file is inside its container");
    let below = parent.strip_prefix(dir).expect("the object is inside its container");
    let mut attempt = 1;
    loop {
        let mut made = dir.to_path_buf();
        let placed = below
            .components()
            .try_for_each(|piece| {
                made.push(piece);
                match std::fs::create_dir(&made) {
                    Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
                    _ => Ok(()),
                }
            })
            .and_then(|()| std::fs::rename(from, to));
        match placed {
            // A concurrent delete pruned a directory just made: make it again.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempt < ATTEMPTS && dir.is_dir() => attempt += 1,
            done => return done,
        }
    }
}

/// After the file at `path` is gone: removes the continuation directories it
/// leaves empty, up to container directory `dir`.
pub fn prune(dir: &Path, path: &Path) {
    for parent in path.ancestors().skip(1).take_while(|d| *d != dir) {
        // Removing a directory that is not empty fails, which ends the climb.
        if std::fs::remove_dir(parent).is_err() {
            break;
        }
    }
}
