//! Data scopes: the one place that turns the name a guest opens (a key-value
//! bucket, a blob container) into the name a backend stores it under.
//!
//! A workload's own data lives at `<namespace>.<workload>.<name>`; data the
//! workload's namespace shares lives at `<namespace>.<name>`. Each part is escaped
//! (`%` → `%25`, `.` → `%2E`) before joining, so the encoding is injective: no two
//! (namespace, workload, name) triples, and no private and shared pair, give the
//! same backend name. Names without `.` or `%` read as they always did; backends
//! escape the result further for their own alphabet (see docs/host.md).

use std::fmt::Write as _;

use weft_runtime::plugin::{BindingSettings, ComponentIdentity};

/// Where one component's buckets or containers live.
#[derive(Debug, Clone)]
pub struct Scope {
    namespace: String,
    workload: String,
    /// Names the workload opens in its namespace's shared scope instead of its own.
    shared: Vec<String>,
}

impl Scope {
    pub fn new(identity: &ComponentIdentity, shared: Vec<String>) -> Scope {
        Scope { namespace: identity.namespace.to_string(), workload: identity.workload.to_string(), shared }
    }

    /// The scope a binding asks for: `setting` (`sharedBuckets`, …) of the
    /// plugin's `hostInterfaces` entries lists the shared names; no other setting
    /// is known.
    pub fn from_settings(binding: &BindingSettings, setting: &str) -> Result<Scope, String> {
        let mut shared = Vec::new();
        for (interface, config) in &binding.config {
            for (key, value) in config {
                if key != setting {
                    return Err(format!("`{interface}`: unknown setting `{key}` (expected `{setting}`)"));
                }
                let names = value.as_array().ok_or(format!("`{interface}`: `{setting}` is a list of names"))?;
                for name in names {
                    shared.push(name.as_str().ok_or(format!("`{interface}`: `{setting}` lists strings"))?.to_string());
                }
            }
        }
        Ok(Scope::new(&binding.identity, shared))
    }

    /// The backend's name for `name` as this component opens it.
    pub fn backend_name(&self, name: &str) -> String {
        if self.shared.iter().any(|s| s == name) {
            join(&[&self.namespace, name])
        } else {
            join(&[&self.namespace, &self.workload, name])
        }
    }
}

fn join(parts: &[&str]) -> String {
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        for c in part.chars() {
            match c {
                '%' | '.' => write!(out, "%{:02X}", c as u32).expect("writing to a String"),
                c => out.push(c),
            }
        }
    }
    out
}

/// The parts of a backend name, for tests and tools: the inverse of the encoding.
pub fn split(backend_name: &str) -> Option<Vec<String>> {
    backend_name
        .split('.')
        .map(|part| {
            let mut out = String::new();
            let mut rest = part;
            while let Some(i) = rest.find('%') {
                out.push_str(&rest[..i]);
                let c = match rest.get(i + 1..i + 3)? {
                    "25" => '%',
                    "2E" => '.',
                    _ => return None,
                };
                out.push(c);
                rest = &rest[i + 3..];
            }
            out.push_str(rest);
            Some(out)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;
    use weft_runtime::workload::WorkloadId;

    use super::*;

    fn scope(namespace: &str, workload: &str, shared: &[&str]) -> Scope {
        let identity = ComponentIdentity {
            workload_id: WorkloadId("test".into()),
            workload: Arc::from(workload),
            namespace: Arc::from(namespace),
            component: Arc::from("c"),
        };
        Scope::new(&identity, shared.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn dotted_names_do_not_collide() {
        assert_ne!(scope("a", "b.c", &[]).backend_name("d"), scope("a", "b", &[]).backend_name("c.d"));
        assert_ne!(scope("x.y", "z", &[]).backend_name("n"), scope("x", "y.z", &[]).backend_name("n"));
        // A shared name never lands on a workload's private bucket.
        assert_ne!(scope("ns", "w", &["w.n"]).backend_name("w.n"), scope("ns", "w", &[]).backend_name("n"));
        assert_eq!(scope("prod", "shop", &[]).backend_name("carts"), "prod.shop.carts");
        assert_eq!(scope("prod", "shop", &["carts"]).backend_name("carts"), "prod.carts");
        assert_eq!(scope("prod", "shop", &[]).backend_name("a.b%"), "prod.shop.a%2Eb%25");
    }

    proptest! {
        #[test]
        fn the_encoding_round_trips(ns in ".*", workload in ".*", name in ".*", shared in any::<bool>()) {
            let grants = if shared { vec![name.as_str()] } else { Vec::new() };
            let parts = split(&scope(&ns, &workload, &grants).backend_name(&name)).expect("decodes");
            let expected = if shared { vec![ns, name] } else { vec![ns, workload, name] };
            prop_assert_eq!(parts, expected);
        }
    }
}
