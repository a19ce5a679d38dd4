//! Names of component imports and exports, and when two of them match.
//!
//! Components built by today's toolchains import WASI at many 0.2.x versions, often
//! several in one component. Imports are therefore matched by semver compatibility
//! (same major version, or same minor version while the major is 0), never by the
//! exact string. Pre-release versions (`0.2.0-draft`) only match themselves.

use std::fmt;

use semver::Version;

/// A parsed import or export name: `ns:pkg/iface@version`, or a plain kebab name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ItemName {
    Interface(InterfaceName),
    /// A plain name such as `greet` (a function or instance imported by name).
    Plain(String),
}

/// `namespace:package/interface@version`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InterfaceName {
    pub namespace: String,
    pub package: String,
    pub interface: String,
    pub version: Option<Version>,
}

impl ItemName {
    pub fn parse(name: &str) -> ItemName {
        InterfaceName::parse(name).map(ItemName::Interface).unwrap_or_else(|| ItemName::Plain(name.to_string()))
    }

    /// Whether an export called `self` can satisfy an import called `wanted`.
    pub fn satisfies(&self, wanted: &ItemName) -> bool {
        match (self, wanted) {
            (ItemName::Interface(offered), ItemName::Interface(wanted)) => offered.satisfies(wanted),
            (ItemName::Plain(a), ItemName::Plain(b)) => a == b,
            _ => false,
        }
    }

    pub fn as_interface(&self) -> Option<&InterfaceName> {
        match self {
            ItemName::Interface(i) => Some(i),
            ItemName::Plain(_) => None,
        }
    }
}

impl InterfaceName {
    /// Parses `ns:pkg/iface` with an optional `@version`; `None` if `name` is not of
    /// that shape.
    pub fn parse(name: &str) -> Option<InterfaceName> {
        let (path, version) = match name.split_once('@') {
            Some((path, version)) => (path, Some(Version::parse(version).ok()?)),
            None => (name, None),
        };
        let (namespace, rest) = path.split_once(':')?;
        let (package, interface) = rest.split_once('/')?;
        if [namespace, package, interface].iter().any(|s| s.is_empty()) || interface.contains('/') {
            return None;
        }
        Some(InterfaceName {
            namespace: namespace.to_string(),
            package: package.to_string(),
            interface: interface.to_string(),
            version,
        })
    }

    /// `ns:pkg/iface` without the version.
    pub fn unversioned(&self) -> String {
        format!("{}:{}/{}", self.namespace, self.package, self.interface)
    }

    /// `ns:pkg` without the version.
    pub fn package(&self) -> String {
        format!("{}:{}", self.namespace, self.package)
    }

    pub fn satisfies(&self, wanted: &InterfaceName) -> bool {
        self.namespace == wanted.namespace
            && self.package == wanted.package
            && self.interface == wanted.interface
            && versions_compatible(self.version.as_ref(), wanted.version.as_ref())
    }
}

/// Two versions are compatible when they share a semver track: the same major
/// version, or the same minor version while the major is 0. Which of the two is
/// newer does not matter here: the type check that follows decides whether the
/// functions actually line up.
pub fn versions_compatible(a: Option<&Version>, b: Option<&Version>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            if !a.pre.is_empty() || !b.pre.is_empty() {
                return a == b;
            }
            match (a.major, b.major) {
                (0, 0) => a.minor == b.minor && (a.minor > 0 || a.patch == b.patch),
                (x, y) => x == y,
            }
        }
        _ => false,
    }
}

impl fmt::Display for InterfaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.unversioned())?;
        if let Some(v) = &self.version {
            write!(f, "@{v}")?;
        }
        Ok(())
    }
}

impl fmt::Display for ItemName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ItemName::Interface(i) => i.fmt(f),
            ItemName::Plain(p) => f.write_str(p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sat(offered: &str, wanted: &str) -> bool {
        ItemName::parse(offered).satisfies(&ItemName::parse(wanted))
    }

    #[test]
    fn parses_interface_names() {
        let n = InterfaceName::parse("wasi:io/streams@0.2.3").unwrap();
        assert_eq!(n.namespace, "wasi");
        assert_eq!(n.package, "io");
        assert_eq!(n.interface, "streams");
        assert_eq!(n.version, Some(Version::new(0, 2, 3)));
        assert_eq!(n.to_string(), "wasi:io/streams@0.2.3");
        assert!(InterfaceName::parse("greet").is_none());
        assert!(InterfaceName::parse("wasi:io@0.2.0").is_none());
        assert!(InterfaceName::parse("wasi:io/streams@latest").is_none());
    }

    #[test]
    fn every_wasi_0_2_minor_matches_the_runtime() {
        for minor in 0..=12 {
            assert!(sat("wasi:io/streams@0.2.12", &format!("wasi:io/streams@0.2.{minor}")));
        }
        assert!(!sat("wasi:io/streams@0.2.12", "wasi:io/streams@0.3.0"));
        assert!(!sat("wasi:io/streams@0.2.12", "wasi:io/poll@0.2.0"));
        assert!(!sat("wasi:io/streams@0.2.12", "wasi:io/streams"));
    }

    #[test]
    fn semver_tracks() {
        assert!(sat("a:b/c@1.4.0", "a:b/c@1.0.0"));
        assert!(!sat("a:b/c@2.0.0", "a:b/c@1.0.0"));
        assert!(!sat("a:b/c@0.0.1", "a:b/c@0.0.2"));
        assert!(sat("wasi:keyvalue/store@0.2.0-draft", "wasi:keyvalue/store@0.2.0-draft"));
        assert!(!sat("wasi:keyvalue/store@0.2.0-draft2", "wasi:keyvalue/store@0.2.0-draft"));
        assert!(!sat("wasi:keyvalue/store@0.2.0", "wasi:keyvalue/store@0.2.0-draft"));
        assert!(sat("greet", "greet"));
        assert!(!sat("greet", "a:b/greet"));
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn version() -> impl Strategy<Value = String> {
            let number = || prop_oneof![0u64..4, any::<u64>()];
            let pre = proptest::option::of("(draft|rc\\.[1-9][0-9]{0,2}|alpha)");
            (number(), number(), number(), pre).prop_map(|(major, minor, patch, pre)| match pre {
                Some(pre) => format!("{major}.{minor}.{patch}-{pre}"),
                None => format!("{major}.{minor}.{patch}"),
            })
        }

        proptest! {
            /// Any string parses, to an interface name or a plain one; what parses
            /// as an interface prints back to a name that parses the same.
            #[test]
            fn any_name_parses_and_interfaces_round_trip(name in "\\PC{0,40}|[a-z:/@.0-9-]{0,30}") {
                if let ItemName::Interface(parsed) = ItemName::parse(&name) {
                    prop_assert_eq!(InterfaceName::parse(&parsed.to_string()), Some(parsed.clone()));
                    prop_assert!(parsed.satisfies(&parsed));
                }
            }

            /// Well-formed names round trip exactly, and compatibility is symmetric
            /// and reflexive.
            #[test]
            fn versions_round_trip_and_compatibility_is_symmetric(
                namespace in "[a-z][a-z0-9-]{0,8}", package in "[a-z][a-z0-9-]{0,8}",
                interface in "[a-z][a-z0-9-]{0,8}", a in version(), b in version(),
            ) {
                let text = format!("{namespace}:{package}/{interface}@{a}");
                let parsed = InterfaceName::parse(&text).unwrap();
                prop_assert_eq!(parsed.to_string(), text);
                let (a, b) = (Version::parse(&a).unwrap(), Version::parse(&b).unwrap());
                prop_assert_eq!(versions_compatible(Some(&a), Some(&b)), versions_compatible(Some(&b), Some(&a)));
                prop_assert!(versions_compatible(Some(&a), Some(&a)));
            }
        }
    }
}
