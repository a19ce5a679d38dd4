//! Credentials for registries and the two ways a registry asks for them: a
//! `Basic` challenge (the credentials themselves) and a `Bearer` challenge (a
//! token from the realm the challenge names, fetched with the credentials or
//! anonymously).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use super::settings::OciSettings;

/// What a host presents to one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Basic {
        username: String,
        password: String,
    },
    /// Sent as `Authorization: Bearer`, as it is.
    Token(String),
    /// An OAuth2 refresh token (Docker's `identitytoken`), exchanged at the
    /// challenge's realm for an access token.
    Identity(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        match self {
            Credential::Basic { username, .. } => write!(f, "Basic({username})"),
            Credential::Token(_) => f.write_str("Token"),
            Credential::Identity(_) => f.write_str("Identity"),
        }
    }
}

impl Credential {
    pub fn basic_header(username: &str, password: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}")))
    }
}

/// The credential for `registry`: the host configuration's first, then the
/// Docker configuration file's (`$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`, unless the settings name one). `None`: anonymous.
pub fn lookup(settings: &OciSettings, registry: &str) -> Result<Option<Credential>, String> {
    if let Some(r) = settings.registries.get(registry) {
        match (&r.username, &r.password, &r.token) {
            (Some(username), Some(password), None) => {
                return Ok(Some(Credential::Basic { username: username.clone(), password: password.clone() }));
            }
            (None, None, Some(token)) => return Ok(Some(Credential::Token(token.clone()))),
            (None, None, None) => {}
            _ => {
                return Err(format!(
                    "the host configuration of registry `{registry}` must give `username` and `password`, or `token`"
                ));
            }
        }
    }
    let Some(path) = settings.docker_config.clone().or_else(default_docker_config) else { return Ok(None) };
    docker_credential(&path, registry)
}

fn default_docker_config() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => Some(PathBuf::from(dir).join("config.json")),
        None => std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json")),
    }
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
    registrytoken: Option<String>,
}

/// Docker's config bounded like a manifest: it is small.
const MAX_DOCKER_CONFIG: u64 = 1 << 20;

fn docker_credential(path: &Path, registry: &str) -> Result<Option<Credential>, String> {
    let bytes = match crate::component::read_regular_file(path, crate::limits::ByteSize(MAX_DOCKER_CONFIG)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let config: DockerConfig =
        serde_json::from_slice(&bytes).map_err(|e| format!("{} is not a Docker configuration: {e}", path.display()))?;
    let wanted = |key: &str| {
        let host = key.trim_start_matches("https://").trim_start_matches("http://");
        let host = host.split('/').next().unwrap_or(host);
        host == registry || (registry == "docker.io" && matches!(host, "index.docker.io" | "registry-1.docker.io"))
    };
    let Some(auth) = config.auths.iter().find(|(key, _)| wanted(key)).map(|(_, a)| a) else { return Ok(None) };
    if let Some(token) = &auth.registrytoken {
        return Ok(Some(Credential::Token(token.clone())));
    }
    if let Some(token) = &auth.identitytoken {
        return Ok(Some(Credential::Identity(token.clone())));
    }
    if let (Some(username), Some(password)) = (&auth.username, &auth.password) {
        return Ok(Some(Credential::Basic { username: username.clone(), password: password.clone() }));
    }
    let Some(encoded) = &auth.auth else { return Ok(None) };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
        .ok_or_else(|| format!("{}: the `auth` of `{registry}` is not base64 of `user:password`", path.display()))?;
    let (username, password) = decoded
        .split_once(':')
        .ok_or_else(|| format!("{}: the `auth` of `{registry}` is not `user:password`", path.display()))?;
    Ok(Some(Credential::Basic { username: username.into(), password: password.into() }))
}

/// A `WWW-Authenticate` header: its scheme and parameters.
#[derive(Debug, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    /// Parses `Bearer realm="…",service="…",scope="…"` (quoted values may hold
    /// commas). Only the first challenge of the header is read.
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, mut rest) = header.split_once(' ').unwrap_or((header, ""));
        let mut params = BTreeMap::new();
        loop {
            rest = rest.trim_start_matches([' ', ',']);
            let Some((key, after)) = rest.split_once('=') else { break };
            let key = key.trim().to_ascii_lowercase();
            let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next().map(|(_, c)| c)),
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                (value, &quoted[end..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_string(), &after[end..])
            };
            params.insert(key, value);
            rest = after;
        }
        Some(Challenge { scheme: scheme.to_ascii_lowercase(), params })
    }
}

/// `application/x-www-form-urlencoded` and query-string escaping.
pub fn form_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The token in a token service's answer (`token`, or OAuth2's `access_token`).
pub fn token_from_answer(body: &[u8]) -> Result<String, String> {
    #[derive(Deserialize)]
    struct Answer {
        token: Option<String>,
        access_token: Option<String>,
    }
    let answer: Answer = serde_json::from_slice(body).map_err(|e| format!("the token service's answer: {e}"))?;
    answer
        .token
        .or(answer.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "the token service sent no token".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_with_quoted_commas() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.example/token");
        assert_eq!(c.params["service"], "registry.example");
        assert_eq!(c.params["scope"], "repository:a/b:pull,push");
        let c = Challenge::parse(r#"Basic realm="basic-realm""#).unwrap();
        assert_eq!((c.scheme.as_str(), c.params["realm"].as_str()), ("basic", "basic-realm"));
        assert_eq!(form_escape("repository:a/b:pull,push"), "repository%3Aa%2Fb%3Apull%2Cpush");
    }

    #[test]
    fn docker_config_auths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let encoded = base64::engine::general_purpose::STANDARD.encode("ann:s3cr:et");
        std::fs::write(
            &path,
            format!(
                r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{encoded}"}},
                    "localhost:5000": {{"identitytoken": "refresh"}}, "bad.io": {{"auth": "!!"}}}},
                    "credsStore": "desktop"}}"#
            ),
        )
        .unwrap();
        let settings = OciSettings { docker_config: Some(path), ..OciSettings::default() };
        assert_eq!(
            lookup(&settings, "docker.io").unwrap(),
            Some(Credential::Basic { username: "ann".into(), password: "s3cr:et".into() })
        );
        assert_eq!(lookup(&settings, "localhost:5000").unwrap(), Some(Credential::Identity("refresh".into())));
        assert_eq!(lookup(&settings, "ghcr.io").unwrap(), None);
        assert!(lookup(&settings, "bad.io").unwrap_err().contains("base64"));
        // The host configuration comes first.
        let mut settings = settings;
        settings.registries.insert(
            "docker.io".into(),
            super::super::settings::RegistrySettings { token: Some("t".into()), ..Default::default() },
        );
        assert_eq!(lookup(&settings, "docker.io").unwrap(), Some(Credential::Token("t".into())));
    }
}
