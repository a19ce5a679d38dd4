//! `wasi:http`: the types every HTTP component needs, and outgoing requests behind
//! a per-component policy.
//!
//! Outgoing requests are denied unless the workload allows the host, per component:
//!
//! ```yaml
//! hostInterfaces:
//!   - interface: wasi:http/outgoing-handler@0.2.0
//!     component: api
//!     config:
//!       allowedHosts: [api.example.com, "*.example.org", "http://localhost:8080"]
//! ```
//!
//! A pattern is a host (`api.example.com`), a wildcard for its subdomains
//! (`*.example.org`, which does not match `example.org` itself), or `*`;
//! optionally with a scheme (`https://…`, default: either) and a port (`…:8443`,
//! default: any). A denied request fails in the guest with `HTTP-request-denied`,
//! never a trap.

use std::fmt;

use wasmtime_wasi_http::{Error, WasiBody, WasiHttpHooks};

/// One `allowedHosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    scheme: Option<String>,
    host: HostMatch,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Any,
    Exact(String),
    /// `*.suffix`: the subdomains of `suffix`.
    Subdomains(String),
}

impl std::str::FromStr for HostPattern {
    type Err = String;

    fn from_str(text: &str) -> Result<HostPattern, String> {
        let invalid = |why: &str| format!("invalid allowed host `{text}`: {why}");
        let (scheme, rest) = match text.split_once("://") {
            Some((scheme @ ("http" | "https"), rest)) => (Some(scheme.to_string()), rest),
            Some((other, _)) => return Err(invalid(&format!("scheme `{other}` is neither http nor https"))),
            None => (None, text),
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port.parse::<u16>().map_err(|_| invalid("the port is not a number"))?)),
            None => (rest, None),
        };
        if host.is_empty() || host.contains('/') {
            return Err(invalid("expected a host name, optionally with a scheme and a port"));
        }
        let host = match host {
            "*" => HostMatch::Any,
            h => match h.strip_prefix("*.") {
                Some(suffix) if !suffix.is_empty() && !suffix.contains('*') => {
                    HostMatch::Subdomains(suffix.to_ascii_lowercase())
                }
                _ if h.contains('*') => return Err(invalid("`*` may only stand alone or start `*.`")),
                _ => HostMatch::Exact(h.to_ascii_lowercase()),
            },
        };
        Ok(HostPattern { scheme, host, port })
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(scheme) = &self.scheme {
            write!(f, "{scheme}://")?;
        }
        match &self.host {
            HostMatch::Any => f.write_str("*")?,
            HostMatch::Exact(h) => f.write_str(h)?,
            HostMatch::Subdomains(s) => write!(f, "*.{s}")?,
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

impl HostPattern {
    pub fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        self.scheme.as_deref().is_none_or(|s| s == scheme)
            && self.port.is_none_or(|p| p == port)
            && match &self.host {
                HostMatch::Any => true,
                HostMatch::Exact(h) => *h == host,
                HostMatch::Subdomains(suffix) => {
                    host.strip_suffix(suffix.as_str()).is_some_and(|head| head.ends_with('.') && head.len() > 1)
                }
            }
    }
}

/// What finishes sending a request: its errors reach the guest.
type ResponseIo = Box<dyn Future<Output = Result<(), Error>> + Send>;

/// The outgoing-request policy of one component: the hooks Wasmtime's `wasi:http`
/// consults before sending.
#[derive(Debug, Clone, Default)]
pub struct OutgoingPolicy {
    pub allowed: Vec<HostPattern>,
}

impl OutgoingPolicy {
    pub fn allows(&self, uri: &http::Uri) -> bool {
        let scheme = uri.scheme_str().unwrap_or("https");
        let Some(host) = uri.host() else { return false };
        let port = uri.port_u16().unwrap_or(if scheme == "http" { 80 } else { 443 });
        self.allowed.iter().any(|p| p.matches(scheme, host, port))
    }
}

impl WasiHttpHooks for OutgoingPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, ResponseIo), Error>> + Send> {
        if !self.allows(request.uri()) {
            tracing::info!(uri = %request.uri(), "outgoing request denied by the component's allowedHosts");
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        drop(fut);
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((response.map(BodyExt::boxed_unsync), Box::new(io) as ResponseIo))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(patterns: &[&str], uri: &str) -> bool {
        let policy = OutgoingPolicy { allowed: patterns.iter().map(|p| p.parse().unwrap()).collect() };
        policy.allows(&uri.parse().unwrap())
    }

    #[test]
    fn patterns() {
        assert!(!allows(&[], "https://example.com/"));
        assert!(allows(&["example.com"], "https://example.com/x"));
        assert!(allows(&["example.com"], "http://EXAMPLE.com:8080/"));
        assert!(!allows(&["example.com"], "https://api.example.com/"));
        assert!(allows(&["*.example.com"], "https://api.example.com/"));
        assert!(!allows(&["*.example.com"], "https://example.com/"));
        assert!(!allows(&["*.example.com"], "https://badexample.com/"));
        assert!(allows(&["https://example.com"], "https://example.com/"));
        assert!(!allows(&["https://example.com"], "http://example.com/"));
        assert!(allows(&["localhost:8080"], "http://localhost:8080/"));
        assert!(!allows(&["localhost:8080"], "http://localhost:8081/"));
        assert!(!allows(&["localhost:443"], "http://localhost/"));
        assert!(allows(&["*"], "http://anything.test/"));
        for bad in ["ftp://x.com", "x.com:port", "*x.com", "a.*.com", "", "x.com/path"] {
            assert!(bad.parse::<HostPattern>().is_err(), "{bad}");
        }
        assert_eq!(
            "https://*.example.com:8443".parse::<HostPattern>().unwrap().to_string(),
            "https://*.example.com:8443"
        );
    }
}
