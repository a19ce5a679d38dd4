//! Routes: which component serves a request, by host, path and method.
//!
//! * host: exact (`api.example.com`), wildcard (`*.example.com`: any subdomain), or
//!   absent (any host);
//! * path: segments, where `{name}` matches one segment (and is passed to the
//!   component as the header `weft-param-<name>`; headers a client sends under
//!   the host's `weft-` prefix never reach it) and a final `*` matches the rest
//!   (`/static/*`), or exact otherwise;
//! * methods: a list, or absent (any method).
//!
//! The most specific route wins: an exact host over a wildcard over any host; then
//! more literal segments; then fewer wildcards. Two routes with the same host,
//! path pattern and an overlapping method conflict.

use std::fmt;

use serde::Deserialize;
use weft_runtime::WorkloadId;
use weft_runtime::plugin::ComponentIdentity;

/// A route as written in a manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteSpec {
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default = "root")]
    pub path: String,
    #[serde(default)]
    pub methods: Vec<String>,
}

fn root() -> String {
    "/*".to_string()
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Any,
    Exact(String),
    Subdomains(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    /// `*` at the end: any number of segments.
    Rest,
}

/// A parsed route, owned by one component of one workload.
#[derive(Debug, Clone)]
pub struct Route {
    host: Host,
    path: Vec<Segment>,
    methods: Vec<http::Method>,
    pub target: ComponentIdentity,
    /// The export that handles requests, e.g. `wasi:http/incoming-handler@0.2.0`.
    pub export: String,
}

/// What matched a request.
pub struct Match<'a> {
    pub route: &'a Route,
    pub params: Vec<(String, String)>,
}

pub enum Lookup<'a> {
    Found(Match<'a>),
    /// The path matches routes, none of them for this method.
    MethodNotAllowed(Vec<http::Method>),
    NotFound,
}

impl Route {
    pub fn parse(spec: &RouteSpec, target: ComponentIdentity, export: String) -> Result<Route, String> {
        // `api.example.com.` is the same name as `api.example.com`.
        let host = match spec.host.as_deref().map(|h| h.strip_suffix('.').filter(|h| !h.is_empty()).unwrap_or(h)) {
            None | Some("*") => Host::Any,
            Some(h) if h.starts_with("*.") && h.len() > 2 && !h[2..].contains('*') => {
                Host::Subdomains(h[2..].to_ascii_lowercase())
            }
            Some(h) if h.is_empty() || h.contains('*') || h.contains('/') => {
                return Err(format!("route host `{h}`: expected `name`, `*.domain` or `*`"));
            }
            Some(h) => Host::Exact(h.to_ascii_lowercase()),
        };
        let Some(rest) = spec.path.strip_prefix('/') else {
            return Err(format!("route path `{}` must start with `/`", spec.path));
        };
        let parts: Vec<&str> = if rest.is_empty() { Vec::new() } else { rest.split('/').collect() };
        let mut path = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let segment = match *part {
                "*" if i == parts.len() - 1 => Segment::Rest,
                "*" => return Err(format!("route path `{}`: `*` only at the end", spec.path)),
                p if p.starts_with('{') && p.ends_with('}') && p.len() > 2 => {
                    Segment::Param(p[1..p.len() - 1].to_string())
                }
                p if p.contains(['{', '}', '*']) => {
                    return Err(format!("route path `{}`: a segment is a name, `{{param}}` or a final `*`", spec.path));
                }
                p => Segment::Literal(p.to_string()),
            };
            path.push(segment);
        }
        let methods = spec
            .methods
            .iter()
            .map(|m| {
                m.to_ascii_uppercase()
                    .parse::<http::Method>()
                    .map_err(|_| format!("route method `{m}` is not a method"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Route { host, path, methods, target, export })
    }

    fn host_matches(&self, host: &str) -> bool {
        match &self.host {
            Host::Any => true,
            Host::Exact(h) => h == host,
            Host::Subdomains(suffix) => {
                host.strip_suffix(suffix.as_str()).is_some_and(|head| head.len() > 1 && head.ends_with('.'))
            }
        }
    }

    fn path_matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        let rest = path.strip_prefix('/')?;
        let parts: Vec<&str> = if rest.is_empty() { Vec::new() } else { rest.split('/').collect() };
        let mut params = Vec::new();
        for (i, segment) in self.path.iter().enumerate() {
            match segment {
                Segment::Rest => return Some(params),
                Segment::Literal(l) => (parts.get(i)? == l).then_some(())?,
                Segment::Param(name) => {
                    let value = parts.get(i).filter(|v| !v.is_empty())?;
                    params.push((name.clone(), value.to_string()));
                }
            }
        }
        (parts.len() == self.path.len()).then_some(params)
    }

    fn allows(&self, method: &http::Method) -> bool {
        self.methods.is_empty() || self.methods.contains(method)
    }

    /// Higher is more specific.
    fn rank(&self) -> (u8, usize, usize, usize) {
        let host = match self.host {
            Host::Exact(_) => 2,
            Host::Subdomains(_) => 1,
            Host::Any => 0,
        };
        let literals = self.path.iter().filter(|s| matches!(s, Segment::Literal(_))).count();
        let wildcard = self.path.iter().filter(|s| matches!(s, Segment::Rest)).count();
        (host, literals, self.path.len() - wildcard, usize::from(!self.methods.is_empty()))
    }

    /// Whether two routes claim the same requests.
    pub fn conflicts_with(&self, other: &Route) -> bool {
        let same_shape = self.host == other.host
            && self.path.len() == other.path.len()
            && self.path.iter().zip(&other.path).all(|(a, b)| match (a, b) {
                (Segment::Literal(x), Segment::Literal(y)) => x == y,
                (Segment::Param(_), Segment::Param(_)) | (Segment::Rest, Segment::Rest) => true,
                _ => false,
            });
        let methods_overlap = self.methods.is_empty()
            || other.methods.is_empty()
            || self.methods.iter().any(|m| other.methods.contains(m));
        same_shape && methods_overlap
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.methods.is_empty() {
            let methods: Vec<&str> = self.methods.iter().map(|m| m.as_str()).collect();
            write!(f, "{} ", methods.join("|"))?;
        }
        match &self.host {
            Host::Any => {}
            Host::Exact(h) => f.write_str(h)?,
            Host::Subdomains(s) => write!(f, "*.{s}")?,
        }
        f.write_str(&self.path_pattern())
    }
}

impl Route {
    /// The path as the route names it: `/users/{id}`, `/static/*`.
    pub fn path_pattern(&self) -> String {
        let parts: Vec<String> = self
            .path
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => l.clone(),
                Segment::Param(p) => format!("{{{p}}}"),
                Segment::Rest => "*".into(),
            })
            .collect();
        format!("/{}", parts.join("/"))
    }
}

/// Every route of every bound component.
#[derive(Debug, Default)]
pub struct Routes {
    routes: Vec<Route>,
}

impl Routes {
    /// Adds a component's routes, all or none: a conflict with another route is an
    /// error naming the workload that holds it, except with a route of the
    /// workload `replacing`, which the new route takes over in the same step (no
    /// request finds neither).
    pub fn add(&mut self, new: Vec<Route>, replacing: Option<&WorkloadId>) -> Result<(), String> {
        let replaced = |r: &Route| replacing == Some(&r.target.workload_id);
        for (i, route) in new.iter().enumerate() {
            let others = self.routes.iter().filter(|r| !replaced(r)).chain(&new[..i]);
            if let Some(held) = others.into_iter().find(|r| r.conflicts_with(route)) {
                return Err(format!(
                    "route `{route}` conflicts with route `{held}` of component `{}` in workload `{}`",
                    held.target.component, held.target.workload
                ));
            }
        }
        self.routes.retain(|held| !(replaced(held) && new.iter().any(|r| r.conflicts_with(held))));
        self.routes.extend(new);
        Ok(())
    }

    pub fn remove(&mut self, target: &ComponentIdentity) {
        self.routes.retain(|r| &r.target != target);
    }

    pub fn lookup(&self, host: &str, path: &str, method: &http::Method) -> Lookup<'_> {
        let host = normalise_host(host);
        let mut candidates: Vec<(&Route, Vec<(String, String)>)> = self
            .routes
            .iter()
            .filter(|r| r.host_matches(&host))
            .filter_map(|r| Some((r, r.path_matches(path)?)))
            .collect();
        candidates.sort_by_key(|(r, _)| std::cmp::Reverse(r.rank()));
        match candidates.iter().position(|(r, _)| r.allows(method)) {
            Some(i) => {
                let (route, params) = candidates.swap_remove(i);
                Lookup::Found(Match { route, params })
            }
            None if candidates.is_empty() => Lookup::NotFound,
            None => Lookup::MethodNotAllowed(candidates.iter().flat_map(|(r, _)| r.methods.clone()).collect()),
        }
    }
}

/// A request's host as routes compare it: no port, lower case, no final dot (the
/// fully qualified `api.example.com.` is `api.example.com`).
fn normalise_host(host: &str) -> String {
    let name = match host.strip_prefix('[') {
        // An IPv6 literal keeps its brackets and loses its port.
        Some(rest) => rest.split_once(']').map_or(host, |(inside, _)| &host[..inside.len() + 2]),
        None => host.split(':').next().unwrap_or(host),
    };
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(workload: &str, component: &str) -> ComponentIdentity {
        ComponentIdentity {
            workload_id: WorkloadId(workload.into()),
            workload: workload.into(),
            namespace: "default".into(),
            component: component.into(),
        }
    }

    fn route(host: Option<&str>, path: &str, methods: &[&str], component: &str) -> Route {
        let spec = RouteSpec {
            host: host.map(String::from),
            path: path.into(),
            methods: methods.iter().map(|m| m.to_string()).collect(),
        };
        Route::parse(&spec, id("w", component), "wasi:http/incoming-handler@0.2.0".into()).unwrap()
    }

    fn find(routes: &Routes, host: &str, path: &str, method: &str) -> Option<(String, Vec<(String, String)>)> {
        match routes.lookup(host, path, &method.parse().unwrap()) {
            Lookup::Found(m) => Some((m.route.target.component.to_string(), m.params)),
            _ => None,
        }
    }

    #[test]
    fn the_most_specific_route_wins() {
        let mut routes = Routes::default();
        routes
            .add(
                vec![
                    route(None, "/*", &[], "fallback"),
                    route(None, "/users/{id}", &["GET"], "users"),
                    route(None, "/users/me", &[], "me"),
                    route(Some("api.example.com"), "/*", &[], "api"),
                    route(Some("*.example.com"), "/*", &[], "wild"),
                    route(None, "/static/*", &[], "static"),
                ],
                None,
            )
            .unwrap();
        assert_eq!(find(&routes, "x", "/users/42", "GET"), Some(("users".into(), vec![("id".into(), "42".into())])));
        assert_eq!(find(&routes, "x", "/users/me", "GET").unwrap().0, "me");
        assert_eq!(find(&routes, "x", "/users/42/more", "GET").unwrap().0, "fallback");
        assert_eq!(find(&routes, "x", "/users/42", "POST").unwrap().0, "fallback");
        assert_eq!(find(&routes, "API.example.com:8080", "/users/42", "GET").unwrap().0, "api");
        assert_eq!(find(&routes, "shop.example.com", "/", "GET").unwrap().0, "wild");
        assert_eq!(find(&routes, "example.com", "/", "GET").unwrap().0, "fallback");
        assert_eq!(find(&routes, "x", "/static/css/site.css", "GET").unwrap().0, "static");
        assert_eq!(find(&routes, "x", "/static", "GET").unwrap().0, "static");
    }

    #[test]
    fn a_final_dot_ports_case_and_ipv6_literals_name_the_same_host() {
        let mut routes = Routes::default();
        routes
            .add(
                vec![
                    route(Some("api.local"), "/*", &[], "api"),
                    route(Some("*.example.com."), "/*", &[], "wild"),
                    route(Some("[::1]"), "/*", &[], "v6"),
                ],
                None,
            )
            .unwrap();
        for host in ["api.local", "api.local.", "API.Local.:8080", "api.local:80"] {
            assert_eq!(find(&routes, host, "/", "GET").unwrap().0, "api", "{host}");
        }
        assert_eq!(find(&routes, "shop.example.com.", "/", "GET").unwrap().0, "wild");
        assert_eq!(find(&routes, "[::1]:8080", "/", "GET").unwrap().0, "v6");
        assert_eq!(find(&routes, "[::1]", "/", "GET").unwrap().0, "v6");
        assert!(find(&routes, "api.local..", "/", "GET").is_none());
        assert!(find(&routes, ".", "/", "GET").is_none());
    }

    #[test]
    fn unknown_paths_and_methods() {
        let mut routes = Routes::default();
        routes.add(vec![route(None, "/only", &["POST"], "a")], None).unwrap();
        assert!(matches!(routes.lookup("x", "/nope", &http::Method::GET), Lookup::NotFound));
        match routes.lookup("x", "/only", &http::Method::GET) {
            Lookup::MethodNotAllowed(allowed) => assert_eq!(allowed, [http::Method::POST]),
            _ => panic!("expected 405"),
        }
    }

    #[test]
    fn conflicts_name_the_holder_and_add_nothing() {
        let mut routes = Routes::default();
        routes.add(vec![route(None, "/users/{id}", &["GET"], "a")], None).unwrap();
        let err = routes
            .add(vec![route(None, "/other", &[], "b"), route(None, "/users/{name}", &[], "b")], None)
            .unwrap_err();
        assert!(err.contains("conflicts with route `GET /users/{id}` of component `a` in workload `w`"), "{err}");
        assert!(matches!(routes.lookup("x", "/other", &http::Method::GET), Lookup::NotFound));
        routes.add(vec![route(None, "/users/{id}", &["POST"], "c")], None).unwrap();
    }

    #[test]
    fn a_replacement_takes_over_the_routes_it_conflicts_with_and_only_those() {
        let mut routes = Routes::default();
        let of = |workload: &str, path: &str, component: &str| {
            let spec = RouteSpec { host: None, path: path.into(), methods: Vec::new() };
            Route::parse(&spec, id(workload, component), "wasi:http/incoming-handler@0.2.0".into()).unwrap()
        };
        routes.add(vec![of("old", "/*", "site"), of("old", "/api/*", "api")], None).unwrap();
        routes.add(vec![of("other", "/admin", "admin")], None).unwrap();
        let old = WorkloadId("old".into());
        // A conflict with a third workload is still one, and changes nothing.
        let err = routes.add(vec![of("new", "/*", "site"), of("new", "/admin", "x")], Some(&old)).unwrap_err();
        assert!(err.contains("workload `other`"), "{err}");
        assert_eq!(find(&routes, "x", "/", "GET").unwrap().0, "site");
        assert_eq!(routes.routes.iter().filter(|r| r.target.workload_id.0 == "old").count(), 2);

        routes.add(vec![of("new", "/*", "site")], Some(&old)).unwrap();
        let holders: Vec<(&str, &str)> =
            routes.routes.iter().map(|r| (r.target.workload_id.0.as_str(), &*r.target.component)).collect();
        assert_eq!(holders, [("old", "api"), ("other", "admin"), ("new", "site")]);
        // Without `replacing`, the same route conflicts.
        assert!(routes.add(vec![of("third", "/*", "site")], None).is_err());
    }

    #[test]
    fn bad_routes() {
        for (host, path) in
            [(None, "users"), (None, "/a/*/b"), (None, "/a{b}"), (Some("a.*.com"), "/"), (Some(""), "/")]
        {
            let spec = RouteSpec { host: host.map(String::from), path: path.into(), methods: vec![] };
            assert!(Route::parse(&spec, id("w", "c"), String::new()).is_err(), "{host:?} {path}");
        }
        let spec = RouteSpec { host: None, path: "/".into(), methods: vec!["NOT A METHOD".into()] };
        assert!(Route::parse(&spec, id("w", "c"), String::new()).is_err());
    }

    mod properties {
        use proptest::collection::vec;
        use proptest::prelude::*;

        use super::*;

        proptest! {
            /// Any route spec is accepted or refused with a message, and any
            /// request is looked up against what was accepted: nothing panics.
            #[test]
            fn any_spec_and_any_request_are_handled(
                host in proptest::option::of("\\PC{0,20}"),
                path in "\\PC{0,40}",
                methods in vec("\\PC{0,8}", 0..3),
                request_host in "\\PC{0,30}",
                request_path in "\\PC{0,60}",
            ) {
                let mut routes = Routes::default();
                let spec = RouteSpec { host, path, methods };
                if let Ok(route) = Route::parse(&spec, id("w", "c"), "x".into()) {
                    routes.add(vec![route], None).unwrap();
                }
                let _ = routes.lookup(&request_host, &request_path, &http::Method::GET);
            }

            /// A route of literal and `{param}` segments (and perhaps a final `*`)
            /// serves every path it describes, with each parameter's value, and
            /// no path one segment longer unless it ends in `*`.
            #[test]
            fn a_route_serves_the_paths_it_describes(
                segments in vec((any::<bool>(), "[a-z0-9]{1,8}"), 0..6),
                rest in any::<bool>(),
                values in vec("[A-Za-z0-9._~%-]{1,8}", 6),
                tail in "(/[a-z]{1,5}){0,3}",
            ) {
                let mut pattern = String::new();
                let mut request = String::new();
                let mut expected = Vec::new();
                for (i, (is_param, literal)) in segments.iter().enumerate() {
                    if *is_param {
                        pattern.push_str(&format!("/{{p{i}}}"));
                        request.push_str(&format!("/{}", values[i]));
                        expected.push((format!("p{i}"), values[i].clone()));
                    } else {
                        pattern.push_str(&format!("/{literal}"));
                        request.push_str(&format!("/{literal}"));
                    }
                }
                if rest {
                    pattern.push_str("/*");
                    request.push_str(&tail);
                }
                if pattern.is_empty() {
                    pattern.push('/');
                }
                if request.is_empty() {
                    request.push('/');
                }
                let mut routes = Routes::default();
                routes.add(vec![route(None, &pattern, &[], "c")], None).unwrap();
                prop_assert_eq!(find(&routes, "any.host", &request, "GET"), Some(("c".to_string(), expected)));
                let longer = format!("{}/extra", request.trim_end_matches('/'));
                prop_assert_eq!(find(&routes, "any.host", &longer, "GET").is_some(), rest);
            }
        }
    }
}
