//! The workload manifest: everything a set of components needs, in one YAML or JSON
//! document. `docs/manifest.md` documents every field.
//!
//! Parsing is strict about shape (a wrong type or a YAML syntax error stops parsing,
//! with line and column) but collects *every* unknown field, so that validation can
//! report them together with all other problems of the manifest.

use std::fmt;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::limits::{ByteSize, LimitsSpec};

/// A parsed workload manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSpec {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub annotations: IndexMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentSpec>,
    /// The long-running component of the workload (it exports `wasi:cli/run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ComponentSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeSpec>,
    /// Interfaces the workload asks of host plugins, with their configuration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_interfaces: Vec<HostInterfaceSpec>,
    /// Explicit choices of provider, for imports more than one provider could serve.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<LinkSpec>,

    /// Directory that relative sources and host paths resolve against (the
    /// manifest's directory when read from a file).
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
    /// Fields the parser did not recognise, as paths (`components[0].sorce`).
    /// Validation rejects a spec that has any.
    #[serde(skip)]
    pub unknown_fields: Vec<String>,
}

fn default_namespace() -> String {
    "default".to_string()
}

/// Like an empty manifest: in namespace `default`, as the parser would have it.
impl Default for WorkloadSpec {
    fn default() -> Self {
        WorkloadSpec {
            name: String::new(),
            namespace: default_namespace(),
            annotations: IndexMap::new(),
            components: Vec::new(),
            service: None,
            volumes: Vec::new(),
            host_interfaces: Vec::new(),
            links: Vec::new(),
            base_dir: None,
            unknown_fields: Vec::new(),
        }
    }
}

/// One component of a workload (also the shape of the service).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentSpec {
    /// Unique within the workload; links and logs refer to the component by it.
    pub name: String,
    pub source: Source,
    /// Values served to the component through `wasi:config`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub config: IndexMap<String, String>,
    /// Environment variables (`wasi:cli/environment`).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub env: IndexMap<String, String>,
    /// Arguments (`wasi:cli/environment.get-arguments`), after the component name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    #[serde(default)]
    pub limits: LimitsSpec,
    /// Keep instances between invocations instead of starting each in a fresh one:
    /// faster, but the component's state (memory, globals, open handles) then
    /// survives from one invocation to the next.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reuse_instances: bool,
    /// Serve every caller of this provider from one instance, made on the first
    /// call and dropped when idle (docs/links.md): for async (WASI 0.3)
    /// providers, which take many calls at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<SharedSpec>,
    /// Only for the service: what to do when it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartPolicy>,
    /// Exports offered to the lattice over wRPC (nothing is, unless listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub serve: Vec<ServeSpec>,
    /// How `weft build` makes the component's source; the host ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildSpec>,
}

/// `shared:` of a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SharedSpec {
    /// How long the instance stays with no call in progress before it is
    /// dropped (`unlimited`: until the workload stops).
    #[serde(default = "SharedSpec::default_idle_timeout", with = "crate::limits::duration")]
    pub idle_timeout: std::time::Duration,
}

impl SharedSpec {
    pub const DEFAULT_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

    fn default_idle_timeout() -> std::time::Duration {
        Self::DEFAULT_IDLE_TIMEOUT
    }
}

impl Default for SharedSpec {
    fn default() -> SharedSpec {
        SharedSpec { idle_timeout: Self::DEFAULT_IDLE_TIMEOUT }
    }
}

/// How `weft build` makes a component (`source` is what it makes). Without a
/// `command`, the component is a Rust crate of the cargo project in `dir`, built
/// for `wasm32-wasip2`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildSpec {
    /// Run by `sh -c` in `dir`; any language's tool (componentize-py, TinyGo, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Where the command writes the component, if not at `source` (then copied there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<PathBuf>,
    /// Where the build runs (the manifest's directory unless set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// Components whose builds must finish before this one starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
}

/// An export a component offers to other hosts of the lattice, over wRPC:
/// `acme:store/carts@1.0.0`, or `{ interface: …, group: eu }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "ServeForm")]
pub struct ServeSpec {
    pub interface: String,
    /// The group of the lattice it is served in; callers link to
    /// `lattice:<group>`. Without one, the lattice's default group (`lattice`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ServeForm {
    Interface(String),
    Full(ServeFields),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServeFields {
    interface: String,
    #[serde(default)]
    group: Option<String>,
}

impl From<ServeForm> for ServeSpec {
    fn from(form: ServeForm) -> ServeSpec {
        match form {
            ServeForm::Interface(interface) => ServeSpec { interface, group: None },
            ServeForm::Full(ServeFields { interface, group }) => ServeSpec { interface, group },
        }
    }
}

/// Where a component's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Source {
    /// A file, relative to the manifest's directory unless absolute.
    Path(PathBuf),
    /// `oci://registry/repository[:tag][@sha256:…]`, pulled by the host
    /// (see [`crate::source::oci`]).
    Oci(String),
    /// `digest://sha256:…`: bytes a lattice client uploaded for this host to
    /// fetch by digest (see [`crate::source::DigestStore`]).
    Digest(String),
}

pub const DIGEST_SCHEME: &str = "digest://";

impl Default for Source {
    fn default() -> Self {
        Source::Path(PathBuf::new())
    }
}

impl From<String> for Source {
    fn from(s: String) -> Self {
        if let Some(reference) = s.strip_prefix("oci://") {
            return Source::Oci(reference.to_string());
        }
        match s.strip_prefix(DIGEST_SCHEME) {
            Some(digest) => Source::Digest(digest.to_string()),
            None => Source::Path(PathBuf::from(s)),
        }
    }
}

impl From<Source> for String {
    fn from(s: Source) -> String {
        s.to_string()
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Path(p) => write!(f, "{}", p.display()),
            Source::Oci(r) => write!(f, "oci://{r}"),
            Source::Digest(d) => write!(f, "{DIGEST_SCHEME}{d}"),
        }
    }
}

/// A volume a workload declares; components mount it by name.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<HostPathVolume>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDirVolume>,
}

/// An existing directory of the host.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostPathVolume {
    pub path: PathBuf,
    #[serde(default)]
    pub read_only: bool,
}

/// A fresh directory created when the workload starts and deleted when it stops.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmptyDirVolume {}

/// A volume mounted into a component as a WASI preopen.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    /// The name of a volume declared under `volumes`.
    pub name: String,
    /// Where the guest sees it (`/data`).
    pub mount_path: String,
    /// Mount read-only even if the volume itself is writable.
    #[serde(default)]
    pub read_only: bool,
}

/// What happens when the service fails (traps or exits with an error).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RestartPolicy {
    /// Restarts allowed before the workload is marked `failed`.
    pub max_restarts: u32,
    pub backoff: Backoff,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy { max_restarts: 5, backoff: Backoff::default() }
    }
}

/// Exponential backoff between restarts: `initial`, `initial * multiplier`, … up to `max`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Backoff {
    #[serde(with = "crate::limits::duration")]
    pub initial: std::time::Duration,
    #[serde(with = "crate::limits::duration")]
    pub max: std::time::Duration,
    pub multiplier: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: std::time::Duration::from_millis(100),
            max: std::time::Duration::from_secs(10),
            multiplier: 2.0,
        }
    }
}

impl Backoff {
    /// The pause before restart number `attempt` (1-based): `initial *
    /// multiplier^(attempt-1)`, saturating at `max` however large the product
    /// (a multiplier that is not a finite number ≥ 1 counts as 1; validation
    /// refuses one).
    pub fn delay(&self, attempt: u32) -> std::time::Duration {
        let multiplier = if self.multiplier.is_finite() { self.multiplier.max(1.0) } else { 1.0 };
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let seconds = self.initial.as_secs_f64() * multiplier.powi(exponent);
        match std::time::Duration::try_from_secs_f64(seconds) {
            Ok(delay) => delay.min(self.max),
            // Too large for a Duration (or NaN from 0 × ∞): the cap.
            Err(_) => self.max,
        }
    }

    /// What is wrong with the policy, if anything.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            problems.push(format!("`multiplier` must be a finite number of at least 1, not {}", self.multiplier));
        }
        if self.initial > self.max {
            problems.push("`initial` must not be longer than `max`".to_string());
        }
        problems
    }
}

/// An interface the workload asks of a host plugin.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostInterfaceSpec {
    /// `ns:pkg/iface@version`, matched semver-compatibly.
    pub interface: String,
    /// Limit the request to one component (default: every component that imports it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// Plugin-specific settings.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub config: IndexMap<String, serde_json::Value>,
}

/// "Component `from`'s import `import` is served by `to`."
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkSpec {
    pub from: String,
    pub import: String,
    /// A component of the workload, `runtime` (the built-in WASI), `plugin:<id>`,
    /// or `lattice` / `lattice:<group>`: a component another host serves over wRPC.
    pub to: String,
    /// For a link to a component: how calls cross it.
    #[serde(default, skip_serializing_if = "LinkModeSpec::is_auto")]
    pub mode: LinkModeSpec,
}

/// How a link to a component is made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkModeSpec {
    /// `fused` where that keeps the behaviour of `dynamic`, `dynamic` otherwise.
    #[default]
    Auto,
    /// Compose the provider into the caller; a validation error if that cannot be done.
    Fused,
    /// Call through the host.
    Dynamic,
}

impl LinkModeSpec {
    fn is_auto(&self) -> bool {
        *self == LinkModeSpec::Auto
    }
}

/// Why a manifest could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read manifest {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("manifest nests deeper than {MAX_YAML_DEPTH} levels (line {line})")]
    TooDeep { line: usize },
    #[error("manifest is not valid {format}{}: {message}", location.map(|(l, c)| format!(" (line {l}, column {c})")).unwrap_or_default())]
    Syntax { format: &'static str, message: String, location: Option<(usize, usize)> },
}

impl WorkloadSpec {
    /// Reads a manifest from a file: `.json` is JSON, anything else YAML. Relative
    /// paths in it resolve against the file's directory.
    pub fn from_file(path: impl AsRef<Path>) -> Result<WorkloadSpec, ManifestError> {
        Self::from_file_limited(path, MAX_MANIFEST_SIZE)
    }

    /// [`from_file`](Self::from_file) of a regular file of at most `limit` bytes.
    pub fn from_file_limited(path: impl AsRef<Path>, limit: ByteSize) -> Result<WorkloadSpec, ManifestError> {
        let path = path.as_ref();
        let io = |source| ManifestError::Io { path: path.to_path_buf(), source };
        let bytes = crate::component::read_regular_file(path, limit).map_err(io)?;
        let text = String::from_utf8(bytes)
            .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error())))?;
        let mut spec = if path.extension().is_some_and(|e| e == "json") {
            Self::from_json(&text)?
        } else {
            Self::from_yaml(&text)?
        };
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        spec.base_dir = Some(std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()));
        Ok(spec)
    }

    pub fn from_yaml(text: &str) -> Result<WorkloadSpec, ManifestError> {
        if let Some(line) = yaml_too_deep(text, MAX_YAML_DEPTH) {
            return Err(ManifestError::TooDeep { line });
        }
        let syntax = |e: serde_yaml_ng::Error| ManifestError::Syntax {
            format: "YAML",
            location: e.location().map(|l| (l.line(), l.column())),
            message: e.to_string(),
        };
        Self::deserialize_collecting_unknown(serde_yaml_ng::Deserializer::from_str(text)).map_err(syntax)
    }

    pub fn from_json(text: &str) -> Result<WorkloadSpec, ManifestError> {
        let syntax = |e: serde_json::Error| ManifestError::Syntax {
            format: "JSON",
            location: Some((e.line(), e.column())),
            message: e.to_string(),
        };
        let mut de = serde_json::Deserializer::from_str(text);
        let spec = Self::deserialize_collecting_unknown(&mut de).map_err(syntax)?;
        de.end().map_err(syntax)?;
        Ok(spec)
    }

    fn deserialize_collecting_unknown<'de, D: serde::Deserializer<'de>>(de: D) -> Result<WorkloadSpec, D::Error> {
        let mut unknown = Vec::new();
        let mut spec: WorkloadSpec = serde_ignored::deserialize(de, |path| unknown.push(field_path(&path)))?;
        spec.unknown_fields = unknown;
        Ok(spec)
    }

    /// The service first, then the components, in manifest order.
    pub fn all_components(&self) -> impl Iterator<Item = &ComponentSpec> {
        self.service.iter().chain(&self.components)
    }

    /// Resolves a path from the manifest against its directory.
    pub fn resolve_path(&self, path: &Path) -> PathBuf {
        match &self.base_dir {
            Some(base) if path.is_relative() => base.join(path),
            _ => path.to_path_buf(),
        }
    }
}

/// How large a manifest file may be unless the caller says otherwise.
pub const MAX_MANIFEST_SIZE: ByteSize = ByteSize(4 << 20);

/// How deeply collections may nest in a YAML manifest. The YAML parser's time grows
/// with the square of the depth, so a deeper document is refused before it sees it.
pub const MAX_YAML_DEPTH: usize = 64;

/// The line (from 1) where `text` nests collections deeper than `limit`, by a
/// linear scan that estimates the depth as open block collections (by indentation)
/// plus `- `/`? ` indicators on the line plus open flow brackets, outside quotes,
/// comments and block scalars.
fn yaml_too_deep(text: &str, limit: usize) -> Option<usize> {
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    let mut quote: Option<u8> = None;
    // The indentation of the line a block scalar (`|`, `>`) started on.
    let mut block_scalar: Option<usize> = None;
    for (n, line) in text.lines().enumerate() {
        let bytes = line.as_bytes();
        let indent = bytes.iter().take_while(|b| **b == b' ').count();
        let rest = &bytes[indent..];
        if let Some(parent) = block_scalar {
            if rest.is_empty() || indent > parent {
                continue;
            }
            block_scalar = None;
        }
        if quote.is_none() && flow == 0 {
            if rest.is_empty() || rest[0] == b'#' {
                continue;
            }
            while indents.last().is_some_and(|top| *top > indent) {
                indents.pop();
            }
            if indents.last() != Some(&indent) {
                indents.push(indent);
            }
        }
        let mut indicators = 0;
        // The first byte of the current whitespace-separated token.
        let mut token: Option<u8> = None;
        let mut end = rest.len();
        let mut i = 0;
        while i < rest.len() {
            let b = rest[i];
            let next = rest.get(i + 1).copied();
            if let Some(q) = quote {
                // An escape (`\x` in double quotes, `''` in single ones) skips a byte.
                let escape = (q == b'"' && b == b'\\') || (b == q && q == b'\'' && next == Some(b'\''));
                if escape {
                    i += 1;
                } else if b == q {
                    quote = None;
                }
                i += 1;
                continue;
            }
            let starts_token = token.is_none();
            if b == b' ' || b == b'\t' {
                token = None;
            } else if starts_token {
                token = Some(b);
            }
            match b {
                b'#' if starts_token => {
                    end = i;
                    break;
                }
                b'"' | b'\''
                    if starts_token || matches!(rest.get(i.wrapping_sub(1)), Some(b'[' | b'{' | b',' | b':')) =>
                {
                    quote = Some(b)
                }
                b'-' | b'?' if starts_token && flow == 0 && matches!(next, None | Some(b' ')) => {
                    indicators += 1;
                    token = None;
                }
                // Inside flow collections brackets are always indicators; in block
                // context only where a node starts (after an anchor or tag too).
                b'[' | b'{' if flow > 0 || starts_token || matches!(token, Some(b'&' | b'!')) => {
                    flow += 1;
                    token = None;
                }
                b']' | b'}' if flow > 0 => flow -= 1,
                b',' if flow > 0 => token = None,
                _ => {}
            }
            if indents.len() + indicators + flow > limit {
                return Some(n + 1);
            }
            i += 1;
        }
        if indents.len() + indicators + flow > limit {
            return Some(n + 1);
        }
        // A block scalar indicator ends the line: what follows, indented, is text.
        if quote.is_none() && flow == 0 {
            let last = rest[..end].trim_ascii_end().rsplit(|b| *b == b' ').next().unwrap_or_default();
            if matches!(last.first(), Some(b'|' | b'>'))
                && last[1..].iter().all(|b| matches!(b, b'-' | b'+' | b'1'..=b'9'))
            {
                block_scalar = Some(indent);
            }
        }
    }
    None
}

/// `components[0].limits.memry` from serde_ignored's path.
fn field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        P::Map { parent, key } => match field_path(parent) {
            p if p.is_empty() => key.clone(),
            p => format!("{p}.{key}"),
        },
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => field_path(parent),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_saturates_at_max() {
        use std::time::Duration;
        let huge = super::Backoff { multiplier: 1e10, ..Default::default() };
        for attempt in [1, 2, 3, 4, 68, 1000, u32::MAX] {
            assert!(huge.delay(attempt) <= huge.max, "attempt {attempt}");
        }
        assert_eq!(huge.delay(4), huge.max);
        let default = super::Backoff::default();
        assert_eq!(default.delay(1), Duration::from_millis(100));
        assert_eq!(default.delay(2), Duration::from_millis(200));
        assert_eq!(default.delay(69), default.max);
        let odd = super::Backoff { multiplier: f64::INFINITY, initial: Duration::ZERO, ..Default::default() };
        assert_eq!(odd.delay(5), Duration::ZERO);
        assert!(!odd.problems().is_empty());
        assert!(super::Backoff { multiplier: f64::NAN, ..Default::default() }.problems().len() == 1);
    }

    use super::*;

    const EXAMPLE: &str = r#"
name: shop
namespace: prod
annotations:
  zeta: last
  alpha: first
components:
  - name: api
    source: ./api.wasm
    config: { greeting: hi }
    env: { RUST_LOG: debug }
    volumeMounts:
      - { name: data, mountPath: /data, readOnly: true }
    limits: { maxConcurrent: 4, memory: 32MiB, cpuTime: 250ms }
  - name: store
    source: oci://ghcr.io/acme/store:1.0
service:
  name: worker
  source: worker.wasm
  args: [--fast]
  restart: { maxRestarts: 2, backoff: { initial: 50ms } }
volumes:
  - { name: data, hostPath: { path: ./data, readOnly: true } }
  - { name: scratch, emptyDir: {} }
hostInterfaces:
  - interface: wasi:keyvalue/store@0.2.0-draft
    config: { bucket: carts }
links:
  - { from: api, import: acme:store/carts@1.0.0, to: store, mode: fused }
"#;

    #[test]
    fn parses_every_section() {
        let spec = WorkloadSpec::from_yaml(EXAMPLE).unwrap();
        assert!(spec.unknown_fields.is_empty(), "{:?}", spec.unknown_fields);
        assert_eq!(spec.namespace, "prod");
        assert_eq!(spec.annotations.keys().collect::<Vec<_>>(), ["zeta", "alpha"]);
        assert_eq!(spec.components[0].source, Source::Path("./api.wasm".into()));
        assert_eq!(spec.components[1].source, Source::Oci("ghcr.io/acme/store:1.0".into()));
        assert_eq!(spec.components[0].limits.memory.map(|m| m.0), Some(32 << 20));
        assert!(spec.components[0].volume_mounts[0].read_only);
        let service = spec.service.as_ref().unwrap();
        let restart = service.restart.as_ref().unwrap();
        assert_eq!(restart.max_restarts, 2);
        assert_eq!(restart.backoff.initial.as_millis(), 50);
        assert_eq!(restart.backoff.max, Backoff::default().max);
        assert!(spec.volumes[1].empty_dir.is_some());
        assert_eq!(spec.links[0].to, "store");
        assert_eq!(spec.links[0].mode, LinkModeSpec::Fused);
        assert_eq!(spec.host_interfaces[0].config["bucket"], "carts");
    }

    #[test]
    fn json_has_the_same_schema() {
        let yaml = WorkloadSpec::from_yaml(EXAMPLE).unwrap();
        let json = serde_json::to_string(&yaml).unwrap();
        let back = WorkloadSpec::from_json(&json).unwrap();
        assert!(back.unknown_fields.is_empty());
        assert_eq!(serde_json::to_value(&back).unwrap(), serde_json::to_value(&yaml).unwrap());
    }

    #[test]
    fn serve_takes_an_interface_or_one_with_its_group() {
        let spec = WorkloadSpec::from_yaml(
            "name: s\ncomponents:\n  - name: c\n    source: c.wasm\n    serve: [\"a:b/c@1.0.0\", { interface: \"a:b/d@1.0.0\", group: eu }]\n",
        )
        .unwrap();
        assert_eq!(
            spec.components[0].serve,
            [
                ServeSpec { interface: "a:b/c@1.0.0".into(), group: None },
                ServeSpec { interface: "a:b/d@1.0.0".into(), group: Some("eu".into()) },
            ]
        );
        let typo = WorkloadSpec::from_yaml(
            "name: s\ncomponents:\n  - name: c\n    source: c.wasm\n    serve: [{ interface: \"a:b/c@1.0.0\", grup: eu }]\n",
        );
        assert!(typo.is_err());
    }

    #[test]
    fn unknown_fields_are_all_collected_with_their_paths() {
        let spec = WorkloadSpec::from_yaml(
            "name: x\ncolour: red\ncomponents:\n  - name: a\n    source: a.wasm\n    limits: { memry: 1MiB }\n",
        )
        .unwrap();
        assert_eq!(spec.unknown_fields, ["colour", "components[0].limits.memry"]);
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let err = WorkloadSpec::from_yaml("name: x\ncomponents:\n  - name: [unclosed\n").unwrap_err();
        match err {
            ManifestError::Syntax { location: Some((line, _)), .. } => assert_eq!(line, 3),
            other => panic!("unexpected {other:?}"),
        }
        let err = WorkloadSpec::from_yaml("name: x\ncomponents: 3\n").unwrap_err();
        let ManifestError::Syntax { location: Some((2, _)), .. } = err else { panic!("{err:?}") };
        let err = WorkloadSpec::from_json("{\"name\": 1}").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn backoff_grows_to_its_cap() {
        let b = Backoff {
            initial: std::time::Duration::from_millis(100),
            max: std::time::Duration::from_millis(350),
            multiplier: 2.0,
        };
        let d: Vec<u128> = (1..=4).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(d, [100, 200, 350, 350]);
    }

    #[test]
    fn deeply_nested_yaml_is_refused_before_parsing() {
        let n = 100_000;
        let deep = [
            format!("name: x\nconfig: {}{}", "[".repeat(n), "]".repeat(n)),
            format!("name: x\nconfig: {}1{}", "{a: ".repeat(n), "}".repeat(n)),
            format!("name: x\nconfig:\n{}1\n", "- ".repeat(n)),
            format!("name: x\nconfig: !t[{}\n", "&a[".repeat(n)),
            (0..3000).map(|i| format!("{}a{i}:\n", " ".repeat(i))).collect(),
        ];
        for yaml in &deep {
            let started = std::time::Instant::now();
            let err = WorkloadSpec::from_yaml(yaml).unwrap_err();
            assert!(matches!(err, ManifestError::TooDeep { .. }), "{err}");
            assert!(started.elapsed() < std::time::Duration::from_secs(1), "took {:?}", started.elapsed());
        }
        let err = WorkloadSpec::from_yaml(&format!("name: x\nconfig:\n  k: {}", "[".repeat(100))).unwrap_err();
        assert_eq!(err.to_string(), "manifest nests deeper than 64 levels (line 3)");
    }

    #[test]
    fn the_depth_estimate_ignores_text() {
        assert_eq!(yaml_too_deep(EXAMPLE, 6), None);
        let within = |depth: usize| format!("config: {}1{}\n", "[".repeat(depth - 1), "]".repeat(depth - 1));
        assert_eq!(yaml_too_deep(&within(MAX_YAML_DEPTH), MAX_YAML_DEPTH), None);
        assert!(WorkloadSpec::from_yaml(&format!("name: x\n{}", within(MAX_YAML_DEPTH))).is_ok());
        assert_eq!(yaml_too_deep(&within(MAX_YAML_DEPTH + 1), MAX_YAML_DEPTH), Some(1));
        // Brackets, dashes and indentation inside text are not structure.
        let text: String = [
            "a: \"[[[[[[[[\"".to_string(),
            "b: '{{{{ it''s [[[['".into(),
            "c: /x[[[[[[[/y # [[[[[[[[".into(),
            "d: |-".into(),
            (1..40).map(|i| format!("{}- [[[[ x\n", " ".repeat(i * 2))).collect(),
            "e: >".into(),
            "  - - - - - - - - - -".into(),
            "f: \"multi".into(),
            "      - - - - - - - - -\"".into(),
        ]
        .join("\n");
        assert_eq!(yaml_too_deep(&text, 3), None);
    }
}
