//! Embeds the project templates of `weft new` (`templates/<name>/`) in the binary.
//!
//! A template is a directory of files, and a `.template` file of lines `about: …`
//! (what `weft new --list` says of it) and `share: DEST = SRC` (a directory of the
//! repository, such as vendored WIT, copied into the project at `DEST`, so it is
//! not kept twice in the tree).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut names: Vec<PathBuf> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    names.sort();
    let mut out = String::from("pub static TEMPLATES: &[Template] = &[\n");
    for dir in names {
        let name = dir.file_name().unwrap().to_str().unwrap().to_string();
        let meta = std::fs::read_to_string(dir.join(".template"))
            .unwrap_or_else(|e| panic!("template {name} has no readable .template file: {e}"));
        let mut about = None;
        let mut files = Vec::new();
        collect(&dir, &dir, Path::new(""), &mut files);
        for line in meta.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(text) = line.strip_prefix("about:") {
                about = Some(text.trim().to_string());
            } else if let Some(share) = line.strip_prefix("share:") {
                let (dest, src) = share.split_once('=').unwrap_or_else(|| panic!("{name}: share needs DEST = SRC"));
                let src = dir.join(src.trim());
                println!("cargo:rerun-if-changed={}", src.display());
                collect(&src, &src, Path::new(dest.trim()), &mut files);
            } else {
                panic!("template {name}: unknown line in .template: {line}");
            }
        }
        let about = about.unwrap_or_else(|| panic!("template {name}: .template has no `about:` line"));
        files.sort();
        writeln!(out, "    Template {{ name: {name:?}, about: {about:?}, files: &[").unwrap();
        for (path, abs) in files {
            writeln!(out, "        ({path:?}, include_str!({abs:?})),").unwrap();
        }
        out.push_str("    ] },\n");
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("templates.rs");
    std::fs::write(dest, out).unwrap();
}

/// Every file under `dir` but `.template`, as (path in the project, absolute path).
fn collect(root: &Path, dir: &Path, dest: &Path, files: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(root, &path, dest, files);
            continue;
        }
        let relative = path.strip_prefix(root).unwrap();
        if relative == Path::new(".template") {
            continue;
        }
        let in_project = dest.join(relative).to_str().unwrap().replace('\\', "/");
        files.push((in_project, path.canonicalize().unwrap().to_str().unwrap().to_string()));
    }
}
