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
//!       allowedAddresses: [127.0.0.1, "10.0.0.0/8"]
//! ```
//!
//! A pattern is a host (`api.example.com`, `127.0.0.1`, `[::1]`), a wildcard for its
//! subdomains (`*.example.org`, which does not match `example.org` itself), or `*`;
//! optionally with a scheme (`https://…`, default: either) and a port (`…:8443`,
//! default: any).
//!
//! The name is half the check: the host resolves the name itself, once, and
//! connects only to the addresses it vetted, so a name that resolves (or rebinds)
//! to a loopback, link-local, private or otherwise non-public address reaches it
//! only if `allowedAddresses` lists that address or a range holding it.
//!
//! Both checks run in `outgoing-handler.handle`, before the request exists: a denied
//! request fails there with `HTTP-request-denied`, never a trap, and never after the
//! guest started writing its body.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite};
use wasmtime::StoreContextMut;
use wasmtime::component::{LinkerInstance, Resource, ResourceTable};
use wasmtime_wasi_http::p2::bindings::http::types::{DnsErrorPayload, ErrorCode, Scheme};
use wasmtime_wasi_http::p2::types::{HostFutureIncomingResponse, HostOutgoingRequest};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks};

use crate::store::StoreState;

/// What Wasmtime waits for each step of a request when the guest sets no
/// `request-options` (its own default).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

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
    /// An IP address, matched as an address (`[::1]` is `[0::1]`).
    Ip(IpAddr),
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
        let port = |p: &str| p.parse::<u16>().map_err(|_| invalid("the port is not a number"));
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let Some((address, after)) = bracketed.split_once(']') else {
                return Err(invalid("`[` without a closing `]`"));
            };
            let address = address.parse::<Ipv6Addr>().map_err(|_| invalid("`[…]` holds no IPv6 address"))?;
            let port = match after {
                "" => None,
                p => Some(port(p.strip_prefix(':').ok_or_else(|| invalid("expected `:port` after `]`"))?)?),
            };
            (HostMatch::Ip(IpAddr::V6(address)), port)
        } else if rest.matches(':').count() > 1 {
            // `::1:8080` is itself an IPv6 address: only brackets tell the port apart.
            return Err(invalid("an IPv6 address is written in brackets, `[::1]` or `[::1]:8080`"));
        } else {
            let (host, port) = match rest.rsplit_once(':') {
                Some((host, p)) => (host, Some(port(p)?)),
                None => (rest, None),
            };
            if host.is_empty() || host.contains('/') {
                return Err(invalid("expected a host name, optionally with a scheme and a port"));
            }
            let host = match host {
                "*" => HostMatch::Any,
                h => match h.strip_prefix("*.") {
                    Some(suffix) if !suffix.is_empty() && !suffix.contains('*') => {
                        HostMatch::Subdomains(normal_name(suffix))
                    }
                    _ if h.contains('*') => return Err(invalid("`*` may only stand alone or start `*.`")),
                    _ => match h.parse::<IpAddr>() {
                        Ok(ip) => HostMatch::Ip(ip),
                        Err(_) => HostMatch::Exact(normal_name(h)),
                    },
                },
            };
            (host, port)
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
            HostMatch::Ip(IpAddr::V4(ip)) => write!(f, "{ip}")?,
            HostMatch::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
            HostMatch::Subdomains(s) => write!(f, "*.{s}")?,
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// A host name as compared: lower case, without the trailing dot of a fully
/// qualified name.
fn normal_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

impl HostPattern {
    /// Whether a request to `host` (a name, or an IP address without brackets)
    /// matches.
    pub fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.scheme.as_deref().is_none_or(|s| s == scheme)
            && self.port.is_none_or(|p| p == port)
            && match (&self.host, host.parse::<IpAddr>()) {
                (HostMatch::Any, _) => true,
                (HostMatch::Ip(ip), Ok(asked)) => ip.to_canonical() == asked.to_canonical(),
                (HostMatch::Ip(_), Err(_)) | (HostMatch::Exact(_) | HostMatch::Subdomains(_), Ok(_)) => false,
                (HostMatch::Exact(h), Err(_)) => *h == normal_name(host),
                (HostMatch::Subdomains(suffix), Err(_)) => normal_name(host)
                    .strip_suffix(suffix.as_str())
                    .is_some_and(|head| head.ends_with('.') && head.len() > 1),
            }
    }

    /// The address this pattern names literally, if it is an IP address.
    fn literal(&self) -> Option<IpAddr> {
        match self.host {
            HostMatch::Ip(ip) => Some(ip),
            _ => None,
        }
    }
}

/// One `allowedAddresses` entry: an address or a CIDR range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRange {
    network: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for AddressRange {
    type Err = String;

    fn from_str(text: &str) -> Result<AddressRange, String> {
        let invalid = |why: &str| format!("invalid allowed address `{text}`: {why}");
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address = address.strip_prefix('[').and_then(|a| a.strip_suffix(']')).unwrap_or(address);
        let network = address
            .parse::<IpAddr>()
            .map_err(|_| invalid("expected an IP address or a range such as `10.0.0.0/8` or `fd00::/8`"))?
            .to_canonical();
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= bits => p,
                _ => return Err(invalid(&format!("the prefix length is not a number from 0 to {bits}"))),
            },
        };
        let range = AddressRange { network, prefix };
        if range.masked() != network {
            return Err(invalid(&format!(
                "address bits are set past /{prefix} (the range starts at {})",
                range.masked()
            )));
        }
        Ok(range)
    }
}

impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl AddressRange {
    /// The first address of the range.
    fn masked(&self) -> IpAddr {
        match self.network {
            IpAddr::V4(ip) => IpAddr::V4(Ipv4Addr::from_bits(ip.to_bits() & mask(self.prefix, 32) as u32)),
            IpAddr::V6(ip) => IpAddr::V6(Ipv6Addr::from_bits(ip.to_bits() & mask(self.prefix, 128))),
        }
    }

    /// Whether `ip` is in the range; an IPv4-mapped IPv6 address counts as its
    /// IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let m = mask(self.prefix, 32) as u32;
                net.to_bits() & m == ip.to_bits() & m
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let m = mask(self.prefix, 128);
                net.to_bits() & m == ip.to_bits() & m
            }
            _ => false,
        }
    }
}

/// The top `prefix` of `bits` bits set.
fn mask(prefix: u8, bits: u32) -> u128 {
    let prefix = u32::from(prefix).min(bits);
    if prefix == 0 { 0 } else { (u128::MAX << (bits - prefix)) & (u128::MAX >> (128 - bits)) }
}

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> AddressRange {
    AddressRange { network: IpAddr::V4(Ipv4Addr::new(a, b, c, d)), prefix }
}

const fn v6(bits: u128, prefix: u8) -> AddressRange {
    AddressRange { network: IpAddr::V6(Ipv6Addr::from_bits(bits)), prefix }
}

/// Addresses no request reaches unless `allowedAddresses` allows them: those not
/// globally reachable (IANA's special-purpose registries), by what they are.
/// The first match names the address.
const NON_PUBLIC: &[(AddressRange, &str)] = &[
    (v4(255, 255, 255, 255, 32), "broadcast"),
    (v4(0, 0, 0, 0, 8), "unspecified"),
    (v4(10, 0, 0, 0, 8), "private"),
    (v4(100, 64, 0, 0, 10), "shared (CGNAT)"),
    (v4(127, 0, 0, 0, 8), "loopback"),
    (v4(169, 254, 0, 0, 16), "link-local"),
    (v4(172, 16, 0, 0, 12), "private"),
    (v4(192, 0, 0, 0, 24), "IETF protocol assignment"),
    (v4(192, 0, 2, 0, 24), "documentation"),
    (v4(192, 168, 0, 0, 16), "private"),
    (v4(198, 18, 0, 0, 15), "benchmarking"),
    (v4(198, 51, 100, 0, 24), "documentation"),
    (v4(203, 0, 113, 0, 24), "documentation"),
    (v4(224, 0, 0, 0, 4), "multicast"),
    (v4(240, 0, 0, 0, 4), "reserved"),
    (v6(0, 128), "unspecified"),
    (v6(1, 128), "loopback"),
    (v6(0, 96), "IPv4-compatible (deprecated)"),
    (v6(0x0064_ff9b_0001 << 80, 48), "local-use NAT64"),
    (v6(0x0100 << 112, 64), "discard-only"),
    (v6(0x2001_0db8 << 96, 32), "documentation"),
    (v6(0xfc00 << 112, 7), "unique local (private)"),
    (v6(0xfe80 << 112, 10), "link-local"),
    (v6(0xfec0 << 112, 10), "site-local (deprecated)"),
    (v6(0xff00 << 112, 8), "multicast"),
];

/// What kind of non-public address `ip` is, or `None` for a public one.
/// IPv4-mapped (`::ffff:a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) and 6to4
/// (`2002:AABB:CCDD::`) addresses are judged by the IPv4 address they carry.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    let ip = ip.to_canonical();
    if let IpAddr::V6(v6) = ip {
        let bits = v6.to_bits();
        let embedded = if bits >> 32 == 0x0064_ff9b << 64 {
            Some(bits as u32)
        } else if bits >> 112 == 0x2002 {
            Some((bits >> 80) as u32)
        } else {
            None
        };
        if let Some(embedded) = embedded.and_then(|v4| non_public(IpAddr::V4(Ipv4Addr::from_bits(v4)))) {
            return Some(embedded);
        }
    }
    NON_PUBLIC.iter().find(|(range, _)| range.contains(ip)).map(|(_, kind)| *kind)
}

/// What finishes sending a request: its errors reach the guest.
type ResponseIo = Box<dyn Future<Output = Result<(), Error>> + Send>;

/// The outgoing-request policy of one component, and the hooks Wasmtime's
/// `wasi:http` consults to send.
#[derive(Debug, Clone, Default)]
pub struct OutgoingPolicy {
    pub allowed: Vec<HostPattern>,
    /// Non-public addresses requests may reach all the same.
    pub addresses: Vec<AddressRange>,
    /// The addresses `handle` vetted for the request it is passing to
    /// `send_request`: the only ones that request connects to.
    vetted: Option<Vec<SocketAddr>>,
    /// With tracing on, the span the request is made in: `send_request` makes a
    /// client span under it and passes it on in `traceparent`.
    trace: Option<(crate::telemetry::Telemetry, crate::telemetry::SpanContext)>,
}

impl OutgoingPolicy {
    /// Applies one setting of a `wasi:http/outgoing-handler` host interface; the
    /// problems, if any.
    pub fn configure(&mut self, key: &str, value: &serde_json::Value) -> Vec<String> {
        let what = match key {
            "allowedHosts" => "host patterns",
            "allowedAddresses" => "IP addresses or CIDR ranges",
            _ => return vec![format!("unknown setting `{key}` (expected `allowedHosts` or `allowedAddresses`)")],
        };
        let Some(items) = value.as_array() else { return vec![format!("`{key}` must be a list of {what}")] };
        let mut problems = Vec::new();
        for item in items {
            let Some(text) = item.as_str() else {
                problems.push(format!("`{item}` is not a string"));
                continue;
            };
            let parsed = match key {
                "allowedHosts" => text.parse().map(|p| self.allowed.push(p)),
                _ => text.parse().map(|a| self.addresses.push(a)),
            };
            problems.extend(parsed.err());
        }
        problems
    }

    /// `allowedHosts` entries that no request could ever use: literal non-public
    /// addresses that `allowedAddresses` does not allow.
    pub fn unreachable_hosts(&self) -> Vec<String> {
        self.allowed
            .iter()
            .filter_map(|pattern| {
                let ip = pattern.literal()?;
                let kind = self.refuses(ip)?;
                Some(format!(
                    "allowed host `{pattern}` is a {kind} address, which requests reach only if \
                     `allowedAddresses` allows it (for example `allowedAddresses: [\"{}\"]`)",
                    ip.to_canonical()
                ))
            })
            .collect()
    }

    pub fn allows(&self, uri: &http::Uri) -> bool {
        let scheme = uri.scheme_str().unwrap_or("https");
        let Some(host) = uri.host() else { return false };
        let port = uri.port_u16().unwrap_or(if scheme == "http" { 80 } else { 443 });
        self.allows_name(scheme, unbracket(host), port)
    }

    fn allows_name(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.allowed.iter().any(|p| p.matches(scheme, host, port))
    }

    /// Why a request may not connect to `ip`, or `None` if it may.
    pub fn refuses(&self, ip: IpAddr) -> Option<&'static str> {
        let kind = non_public(ip)?;
        (!self.addresses.iter().any(|range| range.contains(ip))).then_some(kind)
    }
}

fn unbracket(host: &str) -> &str {
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host)
}

/// Where a guest's request goes, as `handle` reads it from the request.
struct Target {
    uri: String,
    scheme: &'static str,
    /// A name, or an IP address without brackets.
    host: String,
    port: u16,
}

impl Target {
    fn of(request: &HostOutgoingRequest) -> Result<Target, ErrorCode> {
        let scheme = match &request.scheme {
            None => None,
            Some(Scheme::Https) => Some("https"),
            Some(Scheme::Http) => Some("http"),
            Some(Scheme::Other(s)) => Some(s.as_str()),
        };
        Target::new(scheme, request.authority.as_deref(), request.path_with_query.as_deref())
    }

    /// From a request's parts; no scheme is `https`.
    fn new(scheme: Option<&str>, authority: Option<&str>, path_with_query: Option<&str>) -> Result<Target, ErrorCode> {
        let scheme = match scheme {
            None => "https",
            Some(s) if s.eq_ignore_ascii_case("https") => "https",
            Some(s) if s.eq_ignore_ascii_case("http") => "http",
            Some(_) => return Err(ErrorCode::HttpProtocolError),
        };
        let authority = authority.unwrap_or_default();
        let authority: http::uri::Authority = authority.parse().map_err(|_| ErrorCode::HttpRequestUriInvalid)?;
        let port = authority.port_u16().unwrap_or(if scheme == "http" { 80 } else { 443 });
        let uri = format!("{scheme}://{authority}{}", path_with_query.unwrap_or_default());
        Ok(Target { uri, scheme, host: unbracket(authority.host()).to_string(), port })
    }

    /// The addresses of the host: the address itself, or what the name resolves
    /// to, within `timeout`.
    async fn resolve(&self, timeout: Duration) -> Result<Vec<SocketAddr>, ErrorCode> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        let lookup = tokio::net::lookup_host((self.host.as_str(), self.port));
        match tokio::time::timeout(timeout, lookup).await {
            Err(_) => Err(ErrorCode::DnsTimeout),
            Ok(Err(e)) => {
                tracing::debug!(uri = %self.uri, "outgoing request: cannot resolve `{}`: {e}", self.host);
                Err(ErrorCode::DnsError(DnsErrorPayload { rcode: Some(e.to_string()), info_code: None }))
            }
            Ok(Ok(addrs)) => {
                let mut all: Vec<SocketAddr> = Vec::new();
                for addr in addrs {
                    if !all.contains(&addr) {
                        all.push(addr);
                    }
                }
                if all.is_empty() { Err(ErrorCode::DestinationNotFound) } else { Ok(all) }
            }
        }
    }
}

/// The parts of a store an outgoing request needs: one component's HTTP context
/// and policy, and the store's resources.
pub(crate) struct OutgoingView<'a> {
    pub ctx: &'a mut WasiHttpCtx,
    pub policy: &'a mut OutgoingPolicy,
    pub table: &'a mut ResourceTable,
}

impl OutgoingView<'_> {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: self.ctx, hooks: self.policy, table: self.table }
    }

    /// Ends a request `handle` refuses: the guest gave up both resources.
    fn refuse(
        &mut self,
        request: Resource<HostOutgoingRequest>,
        options: Option<Resource<RequestOptions>>,
        code: ErrorCode,
    ) -> wasmtime::Result<HandleResult> {
        self.table.delete(request)?;
        if let Some(options) = options {
            self.table.delete(options)?;
        }
        Ok((Err(code),))
    }
}

type HandleResult = (Result<Resource<HostFutureIncomingResponse>, ErrorCode>,);

/// Defines `wasi:http/outgoing-handler.handle` in `instance`, for the component
/// whose parts `view` picks: Wasmtime's, behind the policy checks.
pub(crate) fn add_to_linker_instance(
    instance: &mut LinkerInstance<'_, StoreState>,
    view: fn(&mut StoreState) -> OutgoingView<'_>,
) -> wasmtime::Result<()> {
    instance.func_wrap_async(
        "handle",
        move |store: StoreContextMut<'_, StoreState>,
              (request, options): (Resource<HostOutgoingRequest>, Option<Resource<RequestOptions>>)| {
            Box::new(handle(store, view, request, options))
        },
    )
}

async fn handle(
    mut store: StoreContextMut<'_, StoreState>,
    view: fn(&mut StoreState) -> OutgoingView<'_>,
    request: Resource<HostOutgoingRequest>,
    options: Option<Resource<RequestOptions>>,
) -> wasmtime::Result<HandleResult> {
    use wasmtime_wasi_http::p2::bindings::http::{outgoing_handler, types};

    let data = store.data();
    let trace = data.trace_context().map(|cx| (data.telemetry().clone(), cx.clone()));
    let mut v = view(store.data_mut());
    let timeout = match &options {
        Some(options) => v.table.get(options)?.connect_timeout,
        None => None,
    };
    let target = match Target::of(v.table.get(&request)?) {
        Ok(target) => target,
        Err(code) => return v.refuse(request, options, code),
    };
    let policy = v.policy.clone();
    let vetted = vet(&policy, &target, timeout.unwrap_or(DEFAULT_TIMEOUT)).await;
    let mut v = view(store.data_mut());
    let vetted = match vetted {
        Ok(vetted) => vetted,
        Err(code) => return v.refuse(request, options, code),
    };

    // Wasmtime builds the request and calls `send_request`, which connects to these.
    v.policy.vetted = Some(vetted);
    v.policy.trace = trace;
    let mut http = v.http();
    let result = outgoing_handler::Host::handle(&mut http, request, options);
    let result = match result {
        Ok(response) => Ok(response),
        Err(e) => Err(types::Host::convert_error_code(&mut http, e)?),
    };
    v.policy.vetted = None;
    v.policy.trace = None;
    Ok((result,))
}

/// The addresses `target` may be reached at under `policy`: its name allowed,
/// resolved within `timeout`, and the non-public addresses the policy does not
/// grant left out; or why the request is refused.
async fn vet(policy: &OutgoingPolicy, target: &Target, timeout: Duration) -> Result<Vec<SocketAddr>, ErrorCode> {
    if !policy.allows_name(target.scheme, &target.host, target.port) {
        tracing::warn!(uri = %target.uri, "outgoing request denied: the component's allowedHosts do not allow it");
        return Err(ErrorCode::HttpRequestDenied);
    }
    let addrs = target.resolve(timeout).await?;
    let (vetted, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
        addrs.into_iter().partition(|a| policy.refuses(a.ip()).is_none());
    if vetted.is_empty() {
        let refused: Vec<String> =
            refused.iter().map(|a| format!("{} ({})", a.ip(), policy.refuses(a.ip()).unwrap_or_default())).collect();
        tracing::warn!(
            uri = %target.uri,
            "outgoing request denied: `{}` is at {}, which the component's allowedAddresses do not allow",
            target.host,
            refused.join(", ")
        );
        return Err(ErrorCode::HttpRequestDenied);
    }
    if !refused.is_empty() {
        tracing::debug!(uri = %target.uri, ?refused, "outgoing request: skipping non-public addresses");
    }
    Ok(vetted)
}

impl WasiHttpHooks for OutgoingPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, ResponseIo), Error>> + Send> {
        drop(fut);
        match self.vetted.take() {
            // WASI 0.2: `handle` vetted the addresses, and answered the guest if not.
            Some(addrs) if self.allows(request.uri()) => match self.trace.take() {
                Some((telemetry, parent)) => Box::new(send_traced(telemetry, parent, request, addrs, options)),
                None => Box::new(send(request, addrs, options)),
            },
            Some(_) => {
                tracing::warn!(uri = %request.uri(), "outgoing request denied: not the request the policy checked");
                Box::new(async { Err(Error::HttpRequestDenied) })
            }
            // WASI 0.3: `client.send` comes straight here; vetted the same way.
            None => {
                let policy = self.clone();
                let timeout = options.as_ref().and_then(|o| o.connect_timeout).unwrap_or(DEFAULT_TIMEOUT);
                Box::new(async move {
                    let uri = request.uri();
                    let target = Target::new(
                        uri.scheme_str(),
                        uri.authority().map(|a| a.as_str()),
                        uri.path_and_query().map(|p| p.as_str()),
                    )?;
                    let addrs = vet(&policy, &target, timeout).await?;
                    send(request, addrs, options).await
                })
            }
        }
    }

    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        OUTGOING_BODY_BUFFER_CHUNKS
    }

    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        OUTGOING_BODY_CHUNK_SIZE
    }
}

/// A WASI 0.2 outgoing body (a response's, a request's) holds up to this many
/// writes the other side has not taken yet, each at most
/// [`OUTGOING_BODY_CHUNK_SIZE`]: 17 × 64 KiB ≈ 1 MiB per body at most
/// (wasmtime-wasi-http's default, 2 × 1 MiB, is twice that). Sixteen, not one:
/// a handler writes its answer in a few small writes (`write!` makes one per
/// piece), and when they all fit, its call ends without waiting for the
/// connection, so the whole response goes out in one write with its length.
const OUTGOING_BODY_BUFFER_CHUNKS: usize = 16;
const OUTGOING_BODY_CHUNK_SIZE: usize = 64 * 1024;

trait Io: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static> Io for T {}

/// [`send`] inside a client span, named in the request's `traceparent` unless
/// the guest set one itself (it traces on its own).
async fn send_traced(
    telemetry: crate::telemetry::Telemetry,
    parent: crate::telemetry::SpanContext,
    mut request: http::Request<WasiBody>,
    addrs: Vec<SocketAddr>,
    options: Option<RequestOptions>,
) -> Result<(http::Response<WasiBody>, ResponseIo), Error> {
    let mut span = telemetry.span(request.method().as_str(), crate::telemetry::model::SpanKind::Client, Some(&parent));
    span.set("http.request.method", request.method().as_str());
    span.set("url.full", request.uri().to_string());
    span.set("server.address", request.uri().host().unwrap_or_default());
    if let Some(cx) = span.context()
        && !request.headers().contains_key("traceparent")
        && let Ok(value) = http::HeaderValue::try_from(cx.traceparent())
    {
        request.headers_mut().insert("traceparent", value);
        if let Ok(state) = http::HeaderValue::try_from(cx.trace_state.as_str())
            && !cx.trace_state.is_empty()
        {
            request.headers_mut().insert("tracestate", state);
        }
    }
    let outcome = send(request, addrs, options).await;
    match &outcome {
        Ok((response, _)) => {
            span.set("http.response.status_code", response.status().as_u16());
            if response.status().is_server_error() {
                span.fail(response.status().to_string());
            }
        }
        Err(e) => span.fail(format!("{e:?}")),
    }
    outcome
}

/// Wasmtime's `default_send_request`, over a connection to one of `addrs`: the
/// same HTTP/1.1 client, TLS (rustls, webpki roots) and timeouts.
async fn send(
    mut request: http::Request<WasiBody>,
    addrs: Vec<SocketAddr>,
    options: Option<RequestOptions>,
) -> Result<(http::Response<WasiBody>, ResponseIo), Error> {
    use http_body_util::BodyExt;
    use tokio::time::timeout;

    let options = options.unwrap_or_default();
    let connect_timeout = options.connect_timeout.unwrap_or(DEFAULT_TIMEOUT);
    let first_byte_timeout = options.first_byte_timeout.unwrap_or(DEFAULT_TIMEOUT);
    // Tokio panics on an interval of zero.
    let between_bytes_timeout = options.between_bytes_timeout.unwrap_or(DEFAULT_TIMEOUT).max(Duration::from_nanos(1));
    let host = unbracket(request.uri().host().ok_or(Error::HttpRequestUriInvalid)?).to_string();

    let stream = timeout(connect_timeout, connect(&addrs)).await.map_err(|_| Error::ConnectionTimeout)??;
    let stream: Box<dyn Io> = if request.uri().scheme() == Some(&http::uri::Scheme::HTTPS) {
        let name = match host.parse::<IpAddr>() {
            Ok(ip) => rustls::pki_types::ServerName::from(ip),
            Err(_) => rustls::pki_types::ServerName::try_from(host)?,
        };
        let tls = tokio_rustls::TlsConnector::from(tls_config()?).connect(name, stream);
        Box::new(timeout(connect_timeout, tls).await.map_err(|_| Error::ConnectionTimeout)?.map_err(Error::Tls)?)
    } else {
        Box::new(stream)
    };
    let handshake = hyper::client::conn::http1::Builder::new().handshake(wasmtime_wasi_http::io::TokioIo::new(stream));
    let (mut sender, conn) = timeout(connect_timeout, handshake).await.map_err(|_| Error::ConnectionTimeout)??;

    // The request line carries the path only: the scheme and authority are for proxies.
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    *request.uri_mut() = http::Uri::builder().path_and_query(path).build().map_err(|_| Error::HttpRequestUriInvalid)?;

    let send = async move {
        let response = timeout(first_byte_timeout, sender.send_request(request))
            .await
            .map_err(|_| Error::ConnectionReadTimeout)??;
        let mut timer = tokio::time::interval(between_bytes_timeout);
        timer.reset();
        Ok::<_, Error>(response.map(|incoming| TimedBody { incoming, timer }))
    };
    // Drive the connection until the response head arrives.
    let mut send = std::pin::pin!(send);
    let mut conn = Some(conn);
    let response = std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = send.as_mut().poll(cx) {
            return Poll::Ready(result);
        }
        let Some(running) = conn.as_mut() else { return Poll::Pending };
        let done = std::task::ready!(Pin::new(running).poll(cx));
        conn = None;
        match done {
            Ok(()) => send.as_mut().poll(cx),
            Err(e) => Poll::Ready(Err(Error::from(e))),
        }
    })
    .await?;
    let io = async move {
        match conn {
            None => Ok(()),
            Some(conn) => conn.await.map_err(|e| if e.is_timeout() { Error::HttpResponseTimeout } else { e.into() }),
        }
    };
    Ok((response.map(BodyExt::boxed_unsync), Box::new(io) as ResponseIo))
}

/// Connects to the first of `addrs` that answers.
async fn connect(addrs: &[SocketAddr]) -> Result<tokio::net::TcpStream, Error> {
    let mut last = None;
    for addr in addrs {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(Error::Connect(last.unwrap_or_else(|| std::io::Error::other("no address to connect to"))))
}

/// The TLS client configuration of every outgoing request.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, Error> {
    crate::tls::client_config().ok_or(Error::TlsProtocolError)
}

/// A response body that fails when the server pauses longer than the
/// between-bytes timeout.
struct TimedBody {
    incoming: hyper::body::Incoming,
    timer: tokio::time::Interval,
}

impl Body for TimedBody {
    type Data = hyper::body::Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<hyper::body::Bytes>, Error>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => {
                Poll::Ready(Some(Err(if e.is_timeout() { Error::HttpResponseTimeout } else { e.into() })))
            }
            Poll::Ready(Some(Ok(frame))) => {
                self.timer.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                std::task::ready!(self.timer.poll_tick(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(patterns: &[&str], uri: &str) -> bool {
        let policy =
            OutgoingPolicy { allowed: patterns.iter().map(|p| p.parse().unwrap()).collect(), ..Default::default() };
        policy.allows(&uri.parse().unwrap())
    }

    #[test]
    fn patterns() {
        assert!(!allows(&[], "https://example.com/"));
        assert!(allows(&["example.com"], "https://example.com/x"));
        assert!(allows(&["example.com"], "http://EXAMPLE.com:8080/"));
        assert!(allows(&["example.com"], "https://example.com./"));
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
        assert!(allows(&["*"], "http://[::1]/"));
        for bad in ["ftp://x.com", "x.com:port", "*x.com", "a.*.com", "", "x.com/path"] {
            assert!(bad.parse::<HostPattern>().is_err(), "{bad}");
        }
        assert_eq!(
            "https://*.example.com:8443".parse::<HostPattern>().unwrap().to_string(),
            "https://*.example.com:8443"
        );
    }

    #[test]
    fn ip_patterns_and_bracketed_ipv6() {
        assert!(allows(&["127.0.0.1"], "http://127.0.0.1:9/"));
        assert!(!allows(&["127.0.0.1"], "http://localhost:9/"));
        assert!(!allows(&["localhost"], "http://127.0.0.1/"));
        assert!(allows(&["[::1]:8080"], "http://[::1]:8080/"));
        assert!(!allows(&["[::1]:8080"], "http://[::1]:8081/"));
        assert!(allows(&["[::1]"], "http://[0:0::1]:1/"));
        assert!(allows(&["http://[::1]"], "http://[::1]/"));
        assert!(allows(&["127.0.0.1"], "http://[::ffff:127.0.0.1]/"));
        assert_eq!("[::1]:8080".parse::<HostPattern>().unwrap().to_string(), "[::1]:8080");
        assert_eq!("https://[fd00::1]".parse::<HostPattern>().unwrap().to_string(), "https://[fd00::1]");
        for (bad, why) in [
            ("::1", "in brackets"),
            ("::1:8080", "in brackets"),
            ("[::1", "closing"),
            ("[example.com]", "no IPv6"),
            ("[::1]8080", "`:port`"),
            ("[::1]:x", "not a number"),
        ] {
            let err = bad.parse::<HostPattern>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn ranges() {
        let range = |s: &str| s.parse::<AddressRange>().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(range("10.0.0.0/8").contains(ip("10.255.1.2")));
        assert!(!range("10.0.0.0/8").contains(ip("11.0.0.0")));
        assert!(range("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
        assert!(range("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!range("127.0.0.1").contains(ip("127.0.0.2")));
        assert!(range("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(!range("0.0.0.0/0").contains(ip("::1")));
        assert!(range("::/0").contains(ip("2001:db8::1")));
        assert!(range("fd00::/8").contains(ip("fd12::1")));
        assert!(!range("fd00::/8").contains(ip("fc00::1")));
        assert!(range("[::1]").contains(ip("::1")));
        assert!(range("::ffff:127.0.0.1").contains(ip("127.0.0.1")));
        assert!(range("172.16.0.0/12").contains(ip("172.31.255.255")));
        assert!(!range("172.16.0.0/12").contains(ip("172.32.0.0")));
        assert_eq!(range("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(range("::1").to_string(), "::1/128");
        for (bad, why) in [
            ("10.0.0.1/8", "starts at 10.0.0.0"),
            ("10.0.0.0/33", "0 to 32"),
            ("::/129", "0 to 128"),
            ("10.0.0.0/x", "0 to 32"),
            ("localhost", "expected an IP address"),
            ("", "expected an IP address"),
            ("10.0.0.0/8/8", "0 to 32"),
        ] {
            let err = bad.parse::<AddressRange>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn non_public_addresses() {
        let kind = |s: &str| non_public(s.parse().unwrap());
        for (address, expected) in [
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("::1", "loopback"),
            ("169.254.169.254", "link-local"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("fc00::1", "unique local (private)"),
            ("fd00:ec2::254", "unique local (private)"),
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("100.64.0.1", "shared (CGNAT)"),
            ("100.127.255.255", "shared (CGNAT)"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("240.0.0.1", "reserved"),
            ("192.0.0.192", "IETF protocol assignment"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::ffff:10.0.0.1", "private"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("2002:7f00:1::", "loopback"),
            ("::127.0.0.1", "IPv4-compatible (deprecated)"),
            ("2001:db8::1", "documentation"),
        ] {
            assert_eq!(kind(address), Some(expected), "{address}");
        }
        for public in
            ["8.8.8.8", "1.1.1.1", "100.128.0.1", "172.32.0.1", "169.255.0.1", "2606:4700::1111", "64:ff9b::808:808"]
        {
            assert_eq!(kind(public), None, "{public}");
        }
    }

    #[test]
    fn addresses_are_refused_unless_allowed() {
        let mut policy = OutgoingPolicy::default();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(policy.refuses(ip("127.0.0.1")), Some("loopback"));
        assert_eq!(policy.refuses(ip("93.184.215.14")), None);
        assert!(policy.configure("allowedAddresses", &serde_json::json!(["127.0.0.1", "10.0.0.0/8"])).is_empty());
        assert_eq!(policy.refuses(ip("127.0.0.1")), None);
        assert_eq!(policy.refuses(ip("::ffff:127.0.0.1")), None);
        assert_eq!(policy.refuses(ip("127.0.0.2")), Some("loopback"));
        assert_eq!(policy.refuses(ip("10.9.9.9")), None);
        assert_eq!(policy.refuses(ip("::1")), Some("loopback"));
        assert_eq!(policy.refuses(ip("169.254.169.254")), Some("link-local"));
    }

    #[test]
    fn settings() {
        let mut policy = OutgoingPolicy::default();
        let problems = policy.configure("allowedHosts", &serde_json::json!(["127.0.0.1", "[::1]:8080", "ok.test", 7]));
        assert_eq!(problems, ["`7` is not a string"]);
        let unreachable = policy.unreachable_hosts();
        assert_eq!(unreachable.len(), 2, "{unreachable:?}");
        assert!(unreachable[0].contains("`127.0.0.1` is a loopback address"), "{unreachable:?}");
        assert!(unreachable[0].contains(r#"allowedAddresses: ["127.0.0.1"]"#), "{unreachable:?}");
        assert!(policy.configure("allowedAddresses", &serde_json::json!(["127.0.0.0/8", "::1"])).is_empty());
        assert!(policy.unreachable_hosts().is_empty());
        assert!(policy.configure("allowedAddresses", &serde_json::json!("10.0.0.0/8"))[0].contains("must be a list"));
        assert!(
            policy.configure("allowedAddresses", &serde_json::json!(["nope"]))[0].contains("invalid allowed address")
        );
        assert!(policy.configure("allowedHost", &serde_json::json!([]))[0].contains("unknown setting `allowedHost`"));
    }
}
