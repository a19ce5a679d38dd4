//! `fused` links: a caller composed with the providers it reaches through fused
//! links into one component, so that calls between them never leave compiled Wasm
//! (Wasmtime compiles the lifting and lowering between them into fused adapters).
//!
//! Each member of the composite keeps its own capabilities: the capability-bearing
//! WASI imports of every member but the entry are renamed to the member's slot
//! (see [`super::slots`]); other imports a member leaves open (plugins, dynamic
//! links) are renamed the same way, so that two members can import one interface
//! from different providers.

use std::fmt::Write as _;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};
use wac_graph::{CompositionGraph, EncodeOptions, NodeId};

use crate::component::Digest;

/// One component of a composite.
pub(crate) struct Part {
    pub name: String,
    pub digest: Digest,
    pub bytes: Arc<[u8]>,
    /// How each of its imports is satisfied; imports not listed stay open under
    /// their own names.
    pub wiring: Vec<(String, Wire)>,
}

pub(crate) enum Wire {
    /// By another part's export.
    Part { part: usize, export: String },
    /// By an import of the composite with another name.
    Renamed(String),
}

/// A composite of `parts`, instantiated in their order (providers before their
/// callers), exporting everything part `entry` exports.
pub(crate) struct Composite {
    pub parts: Vec<Part>,
    pub entry: usize,
}

impl Composite {
    /// What identifies the composite: its parts and their wiring. The same key
    /// means the same bytes, so it keys the compiled-component cache.
    pub fn key(&self) -> Digest {
        let mut text = format!("weft composite v1, entry {}\n", self.entry);
        for part in &self.parts {
            let _ = writeln!(text, "part {} {}", part.name, part.digest);
            for (import, wire) in &part.wiring {
                match wire {
                    Wire::Part { part, export } => writeln!(text, "  {import} <- part {part} {export}"),
                    Wire::Renamed(name) => writeln!(text, "  {import} <- import {name}"),
                }
                .expect("writing to a string");
            }
        }
        Digest(Sha256::digest(text.as_bytes()).into())
    }

    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let mut graph = CompositionGraph::new();
        let mut instances: Vec<NodeId> = Vec::new();
        for (i, part) in self.parts.iter().enumerate() {
            let package =
                wac_types::Package::from_bytes(&format!("weft:part{i}"), None, part.bytes.to_vec(), graph.types_mut())
                    .map_err(|e| format!("component `{}`: {e:#}", part.name))?;
            let world = package.ty();
            let package = graph.register_package(package).map_err(|e| e.to_string())?;
            let instance = graph.instantiate(package);
            for (import, wire) in &part.wiring {
                let argument = match wire {
                    Wire::Part { part: provider, export } => graph
                        .alias_instance_export(instances[*provider], export)
                        .map_err(|e| format!("component `{}`: {e}", self.parts[*provider].name))?,
                    Wire::Renamed(name) => {
                        let kind = graph.types()[world].imports[import.as_str()];
                        graph.import(name.clone(), kind).map_err(|e| format!("import `{name}`: {e}"))?
                    }
                };
                graph
                    .set_instantiation_argument(instance, import, argument)
                    .map_err(|e| format!("component `{}`, import `{import}`: {e}", part.name))?;
            }
            instances.push(instance);
        }
        let entry = instances[self.entry];
        let world = graph[graph[entry].package().expect("an instantiation has a package")].ty();
        let exports: Vec<String> = graph.types()[world].exports.keys().cloned().collect();
        for name in exports {
            let alias = graph.alias_instance_export(entry, &name).map_err(|e| e.to_string())?;
            graph.export(alias, name).map_err(|e| e.to_string())?;
        }
        graph.encode(EncodeOptions::default()).map_err(|e| error_chain(&e))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
