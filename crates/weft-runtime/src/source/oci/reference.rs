//! OCI references: `registry/repository[:tag][@sha256:digest]`, as in
//! `oci://ghcr.io/acme/api:1.0` or wasmCloud's bare `image` fields.

use std::fmt;

/// A parsed, checked reference. Its parts are safe to use as path components of
/// the on-disk cache (see [`Reference::parse`] for the rules).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `ghcr.io`, `localhost:5000`; `docker.io` when the reference names none.
    pub registry: String,
    /// `acme/api`; `library/x` for a one-part name on Docker Hub.
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<64 hex digits>`: the manifest's digest, which pins the content.
    pub digest: Option<String>,
}

const DOCKER_HUB: &str = "docker.io";
/// The distribution spec's bound on a repository name.
const MAX_REPOSITORY: usize = 255;
const MAX_TAG: usize = 128;

impl Reference {
    /// Parses a reference. The registry is the first `/`-separated part when it
    /// has a `.` or a `:` or is `localhost` (as Docker reads it); repository
    /// parts are lowercase letters and digits joined by `.`, `_`, `__` or `-`;
    /// a tag is up to 128 of letters, digits, `_`, `.`, `-`, not starting with
    /// `.` or `-`; the only digest algorithm is sha256. Without tag or digest
    /// the tag is `latest`.
    pub fn parse(text: &str) -> Result<Reference, String> {
        let invalid = |why: &str| format!("`{text}` is not an OCI reference: {why}");
        let text_trimmed = text.strip_prefix("oci://").unwrap_or(text);
        let (rest, digest) = match text_trimmed.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (text_trimmed, None),
        };
        if let Some(d) = digest {
            check_digest(d).map_err(|why| invalid(&why))?;
        }
        let (registry, path) = match rest.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => (first, path),
            _ => (DOCKER_HUB, rest),
        };
        if !is_registry(registry) {
            return Err(invalid("the registry must be a host name or [IPv6 address], with an optional port"));
        }
        // A `:` after the last `/` starts the tag.
        let (repository, tag) = match path.rfind(':') {
            Some(i) if !path[i..].contains('/') => (&path[..i], Some(&path[i + 1..])),
            _ => (path, None),
        };
        if let Some(tag) = tag {
            let first_ok = tag.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            if !first_ok || tag.len() > MAX_TAG || !tag.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            {
                return Err(invalid(
                    "a tag is 1 to 128 letters, digits, `_`, `.` or `-`, not starting with `.` or `-`",
                ));
            }
        }
        if repository.is_empty() || repository.len() > MAX_REPOSITORY {
            return Err(invalid("the repository name must be 1 to 255 characters"));
        }
        if !repository.split('/').all(is_path_component) {
            return Err(invalid("repository parts are lowercase letters and digits, joined by `.`, `_`, `__` or `-`"));
        }
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_string()
        };
        let tag = match (tag, digest) {
            (None, None) => Some("latest".to_string()),
            (tag, _) => tag.map(str::to_string),
        };
        Ok(Reference { registry: registry.to_string(), repository, tag, digest: digest.map(str::to_string) })
    }

    /// The host the registry's API answers on (Docker Hub's differs from its name).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB { "registry-1.docker.io" } else { &self.registry }
    }

    /// What the manifest is fetched by: the digest when pinned, else the tag
    /// (`latest` for a reference built with neither).
    pub fn target(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or("latest")
    }

    /// The same repository, pinned to a manifest digest.
    pub fn pinned(&self, digest: &str) -> Reference {
        Reference { digest: Some(digest.to_string()), ..self.clone() }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// `sha256:` and 64 lowercase hex digits.
pub fn check_digest(digest: &str) -> Result<(), String> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) => Ok(()),
        Some(_) => Err(format!("digest `{digest}` must be `sha256:` and 64 lowercase hex digits")),
        None => Err(format!("digest `{digest}` must use sha256, the only algorithm weft verifies")),
    }
}

/// `host[:port]`: DNS labels (letters, digits, `-`, not at either end) joined
/// by `.`, or a bracketed IPv6 address. Nothing else: the registry names a
/// directory of the cache, so `..` and empty labels must not pass.
fn is_registry(registry: &str) -> bool {
    let (host, port) = match registry.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((ip, "")) if ip.parse::<std::net::Ipv6Addr>().is_ok() => ("ip", None),
            Some((ip, after)) if ip.parse::<std::net::Ipv6Addr>().is_ok() && after.starts_with(':') => {
                ("ip", Some(&after[1..]))
            }
            _ => return false,
        },
        None => match registry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        },
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    port_ok && host.len() <= 253 && host.split('.').all(label_ok)
}

/// `[a-z0-9]+` runs joined by one separator: `.`, `_`, `__`, or any number of `-`.
fn is_path_component(part: &str) -> bool {
    let bytes = part.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &part[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-')) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn registries_repositories_tags_and_digests() {
        let r = Reference::parse("oci://ghcr.io/acme/api:1.0").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("ghcr.io", "acme/api", Some("1.0"))
        );
        assert_eq!(r.to_string(), "ghcr.io/acme/api:1.0");
        let r = Reference::parse("localhost:5000/a/b/c").unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str(), r.target()), ("localhost:5000", "a/b/c", "latest"));
        let r = Reference::parse(&format!("127.0.0.1:5000/app@{D}")).unwrap();
        assert_eq!((r.tag.as_deref(), r.digest.as_deref(), r.target()), (None, Some(D), D));
        let r = Reference::parse(&format!("ghcr.io/app:v2@{D}")).unwrap();
        assert_eq!((r.tag.as_deref(), r.target()), (Some("v2"), D));
        let r = Reference::parse("nginx").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.api_host()),
            ("docker.io", "library/nginx", "registry-1.docker.io")
        );
        let r = Reference::parse("acme/hello:latest").unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str()), ("docker.io", "acme/hello"));
        assert_eq!(Reference::parse("r.io/a__b.c-d--e").unwrap().repository, "a__b.c-d--e");
        assert_eq!(Reference::parse("[::1]:5000/a").unwrap().registry, "[::1]:5000");
    }

    #[test]
    fn malformed_references_are_refused_with_the_rule() {
        for (text, why) in [
            ("", "repository"),
            ("ghcr.io/", "repository"),
            ("ghcr.io/Acme/api", "lowercase"),
            ("ghcr.io/a/../b", "lowercase"),
            ("ghcr.io/a//b", "lowercase"),
            ("ghcr.io/a:", "tag"),
            ("ghcr.io/a:-x", "tag"),
            ("ghcr.io/a:x/y", "lowercase"),
            ("ghcr.io/a@sha256:00", "64 lowercase hex"),
            ("ghcr.io/a@md5:00", "sha256"),
            ("bad host!.io/a", "registry"),
            ("../blobs/sha256", "registry"),
            ("./a", "registry"),
            ("a..b.io/x", "registry"),
            ("r.io:/x", "registry"),
            ("r.io:99999999/x", "registry"),
            ("[nope]:5000/x", "registry"),
            ("[::1]x/y", "registry"),
        ] {
            let e = Reference::parse(text).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
        assert!(Reference::parse(&format!("r.io/a:{}", "t".repeat(129))).is_err());
    }
}
