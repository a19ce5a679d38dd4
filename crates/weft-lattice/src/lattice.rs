//! Lattice names: two lattices on one NATS server, apart. The default lattice
//! uses wasmCloud's subjects as they are (`runtime.host.<id>.…`), so wasmCloud's
//! control plane can reach it; a named lattice prefixes every subject with
//! `weft.lattice.<name>.` (`weft.lattice.<name>.runtime.host.<id>.…`) and
//! suffixes its JetStream buckets (`weft_hosts_<name>`), so neither sees the
//! other's hosts, workloads or uploaded components. The prefix starts with
//! `weft`, a token the messaging plugin never lets a guest use, so guests stay
//! off a named lattice's control subjects as they do off the default one's.
//! (wasmCloud v2's subjects have no lattice part: a named weft lattice is for
//! weft clients.)

use std::fmt;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lattice {
    name: Option<String>,
}

const MAX_NAME: usize = 32;

impl Lattice {
    /// A named lattice: 1 to 32 ASCII letters, digits, `-` or `_` (they go into
    /// subjects and bucket names); `default` is the default lattice.
    pub fn named(name: &str) -> Result<Lattice, String> {
        if name == "default" {
            return Ok(Lattice::default());
        }
        if name.is_empty()
            || name.len() > MAX_NAME
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!("lattice name `{name}` must be 1 to {MAX_NAME} ASCII letters, digits, `-` or `_`"));
        }
        Ok(Lattice { name: Some(name.to_string()) })
    }

    /// `subject` in this lattice.
    pub fn subject(&self, subject: &str) -> String {
        match &self.name {
            Some(name) => format!("weft.lattice.{name}.{subject}"),
            None => subject.to_string(),
        }
    }

    /// The JetStream bucket `base` of this lattice.
    pub fn bucket(&self, base: &str) -> String {
        match &self.name {
            Some(name) => format!("{base}_{name}"),
            None => base.to_string(),
        }
    }
}

impl fmt::Display for Lattice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name.as_deref().unwrap_or("default"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_prefix_subjects_and_suffix_buckets() {
        let default = Lattice::default();
        assert_eq!(default.subject("runtime.host.x.heartbeat"), "runtime.host.x.heartbeat");
        assert_eq!(default.bucket("weft_hosts"), "weft_hosts");
        assert_eq!(Lattice::named("default").unwrap(), default);
        let blue = Lattice::named("blue-1").unwrap();
        assert_eq!(blue.subject("runtime.host.x.heartbeat"), "weft.lattice.blue-1.runtime.host.x.heartbeat");
        assert_eq!(blue.bucket("weft_components"), "weft_components_blue-1");
        for bad in ["", "a.b", "a*", "a>", "a b", &"x".repeat(33)] {
            assert!(Lattice::named(bad).is_err(), "{bad}");
        }
    }
}
