//! `weft new`: a project from a template, embedded (offline) or a local directory.
//!
//! A template is a tree of text files. In file contents and paths, `{{name}}` becomes
//! the project's name and `{{crate_name}}` its Rust identifier (`-` → `_`); a
//! trailing `.tmpl` is dropped from file names (so a template's `Cargo.toml` is not
//! taken for a crate of weft's own workspace).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;

use crate::print::out;

/// One embedded template: its name, a line about it, and its files (path, text).
pub struct Template {
    pub name: &'static str,
    pub about: &'static str,
    pub files: &'static [(&'static str, &'static str)],
}

include!(concat!(env!("OUT_DIR"), "/templates.rs"));

/// A project name longer than this is refused: it becomes a crate, a directory and
/// a WIT package name.
const MAX_NAME_LEN: usize = 64;

/// What a local template directory may hold; more is a mistake (a `target/` left
/// in it, a wrong directory).
const MAX_LOCAL_FILES: usize = 1000;
const MAX_LOCAL_BYTES: u64 = 16 << 20;

#[derive(Args)]
pub struct NewArgs {
    /// The project's name: lowercase words joined by `-` (it names the crate, the
    /// workload and the WIT package). The project goes in ./NAME unless --dir says.
    #[arg(required_unless_present = "list")]
    name: Option<String>,
    /// An embedded template (`weft new --list`), or the path of a template directory.
    #[arg(long, short, default_value = "http", value_name = "TEMPLATE|PATH", value_parser = TemplateName)]
    template: String,
    /// Where to create the project (it must not exist, or be empty).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// List the embedded templates and exit.
    #[arg(long)]
    list: bool,
}

pub fn new(args: NewArgs) -> anyhow::Result<ExitCode> {
    if args.list {
        let width = TEMPLATES.iter().map(|t| t.name.len()).max().unwrap_or(0);
        let list: String = TEMPLATES.iter().map(|t| format!("{:width$}  {}\n", t.name, t.about)).collect();
        out(&list)?;
        return Ok(ExitCode::SUCCESS);
    }
    let name = args.name.expect("clap requires NAME without --list");
    check_name(&name)?;
    let files = template_files(&args.template)?;
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&name));
    let created = prepare_dir(&dir)?;
    let crate_name = name.replace('-', "_");
    let render = |text: &str| text.replace("{{name}}", &name).replace("{{crate_name}}", &crate_name);
    let written = files.iter().try_for_each(|(path, text)| {
        let path = render(path);
        let path = dir.join(path.strip_suffix(".tmpl").unwrap_or(&path));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
        }
        std::fs::write(&path, render(text)).with_context(|| format!("write {}", path.display()))
    });
    if let Err(e) = written {
        // Nothing half-made is left behind in a directory this command made.
        if created {
            let _ = std::fs::remove_dir_all(&dir);
        }
        return Err(e);
    }
    let mut next = format!("  cd {}\n", dir.display());
    for step in next_steps(&dir) {
        next.push_str(&format!("  {step}\n"));
    }
    out(&format!("created `{name}` from template {} in {}\nnext:\n{next}", args.template, dir.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// What to run next, from the `# weft …` lines that open the project's
/// weft.yaml (each template says there how it is built and run).
fn next_steps(dir: &Path) -> Vec<String> {
    let yaml = std::fs::read_to_string(dir.join("weft.yaml")).unwrap_or_default();
    let steps: Vec<String> = yaml
        .lines()
        .map_while(|l| l.strip_prefix('#'))
        .filter_map(|l| {
            let l = l.trim_start();
            let command = l.split("  ").next()?.trim_end();
            command.starts_with("weft ").then(|| command.to_string())
        })
        .collect();
    if steps.is_empty() { vec!["weft build".into(), "weft run weft.yaml".into()] } else { steps }
}

/// Any string (a template directory's path is one too), but completions and help
/// offer the embedded templates' names.
#[derive(Clone)]
struct TemplateName;

impl clap::builder::TypedValueParser for TemplateName {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        clap::builder::StringValueParser::new().parse_ref(cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(TEMPLATES.iter().map(|t| clap::builder::PossibleValue::new(t.name).help(t.about))))
    }
}

/// A kebab-case name that is also a crate name, a WIT package namespace and a Rust
/// module (so not a keyword).
fn check_name(name: &str) -> anyhow::Result<()> {
    const KEYWORDS: &[&str] = &[
        "as", "async", "await", "box", "break", "const", "continue", "crate", "do", "dyn", "else", "enum", "extern",
        "false", "final", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "macro", "match", "mod", "move",
        "mut", "override", "priv", "pub", "ref", "return", "self", "static", "struct", "super", "trait", "true", "try",
        "type", "typeof", "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
    ];
    let words_ok = name.split('-').all(|w| {
        w.starts_with(|c: char| c.is_ascii_lowercase())
            && w.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    });
    if name.is_empty() || name.len() > MAX_NAME_LEN || !words_ok {
        bail!(
            "`{name}` is not a project name: use lowercase words of letters and digits, each starting with a \
             letter, joined by `-` (at most {MAX_NAME_LEN} characters), such as `my-app`"
        );
    }
    if KEYWORDS.contains(&name) {
        bail!("`{name}` is a Rust keyword and cannot name the project's crate");
    }
    Ok(())
}

/// The template's files: an embedded one by name, else a directory by path.
fn template_files(template: &str) -> anyhow::Result<Vec<(String, String)>> {
    if let Some(t) = TEMPLATES.iter().find(|t| t.name == template) {
        return Ok(t.files.iter().map(|(p, text)| (p.to_string(), text.to_string())).collect());
    }
    let dir = Path::new(template);
    if !dir.is_dir() {
        let names: Vec<&str> = TEMPLATES.iter().map(|t| t.name).collect();
        bail!("no template `{template}`: the embedded ones are {}; or give a template directory", names.join(", "));
    }
    let mut files = Vec::new();
    let mut bytes = 0;
    read_local(dir, dir, &mut files, &mut bytes)?;
    if files.is_empty() {
        bail!("template directory {} has no files", dir.display());
    }
    Ok(files)
}

fn read_local(root: &Path, dir: &Path, files: &mut Vec<(String, String)>, bytes: &mut u64) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("read template directory {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let file_name = entry.file_name();
        // Version control and build output are not part of a template.
        if [".git", "target", ".template"].iter().any(|skip| file_name == *skip) {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            read_local(root, &path, files, bytes)?;
            continue;
        }
        if !kind.is_file() {
            bail!("template file {} is not a regular file (links are not followed)", path.display());
        }
        *bytes += entry.metadata()?.len();
        if files.len() >= MAX_LOCAL_FILES || *bytes > MAX_LOCAL_BYTES {
            bail!("template directory {} holds more than {MAX_LOCAL_FILES} files or 16 MiB", root.display());
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("read template file {} (templates are text)", path.display()))?;
        let relative = path.strip_prefix(root).expect("under the root").to_string_lossy().replace('\\', "/");
        files.push((relative, text));
    }
    Ok(())
}

/// Makes `dir` if it does not exist (true then); refuses a non-empty one.
fn prepare_dir(dir: &Path) -> anyhow::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!("{} exists and is not empty: weft new does not write over anything", dir.display());
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
            Ok(true)
        }
        Err(e) => Err(e).with_context(|| format!("{} cannot be used for the project", dir.display())),
    }
}
