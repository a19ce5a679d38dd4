//! `fused` links: a caller composed with the providers it reaches through fused
//! links into one component, so that calls between them never leave compiled Wasm
//! (Wasmtime compiles the lifting and lowering between them into fused adapters).
//!
//! Each member of the composite keeps its own capabilities: the capability-bearing
//! WASI imports of every member but the entry are renamed to the member's slot
//! (see [`super::slots`]); other imports a member leaves open (plugins, dynamic
//! links) are renamed the same way, so that two members can import one interface
//! from different providers, each served as itself.
//!
//! A member's imports are renamed in its own binary, before composition: the
//! composition tool re-encodes each import's type and resolves a type one
//! interface `use`s from another (a key-value `bucket` in `atomics`) by the
//! other's interface name, so renaming a group of interfaces at the composite's
//! import (a label naming the interface it implements) would tie every member's
//! `atomics` to one `store`. Renamed inside the member, the group names itself
//! (`weft-m3:wasi-keyvalue/store@…` and `weft-m3:wasi-keyvalue/atomics@…`) and its
//! types stay the member's own.

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
    /// By an import of the composite with another name (renamed in the part's
    /// binary).
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
        let mut text = format!("weft composite v2, entry {}\n", self.entry);
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
            let renames: Vec<(&str, &str)> = part
                .wiring
                .iter()
                .filter_map(|(import, wire)| match wire {
                    Wire::Renamed(name) => Some((import.as_str(), name.as_str())),
                    Wire::Part { .. } => None,
                })
                .collect();
            let bytes = if renames.is_empty() { part.bytes.to_vec() } else { rename_imports(&part.bytes, &renames)? };
            let package = wac_types::Package::from_bytes(&format!("weft:part{i}"), None, bytes, graph.types_mut())
                .map_err(|e| format!("component `{}`: {e:#}", part.name))?;
            let package = graph.register_package(package).map_err(|e| e.to_string())?;
            let instance = graph.instantiate(package);
            for (import, wire) in &part.wiring {
                // A renamed import stays open: the composite imports it under its new name.
                let Wire::Part { part: provider, export } = wire else { continue };
                let argument = graph
                    .alias_instance_export(instances[*provider], export)
                    .map_err(|e| format!("component `{}`: {e}", self.parts[*provider].name))?;
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

/// `bytes` (a component) with its imports named `from` named `to`; nothing else
/// changes (types and aliases refer to imports by index).
fn rename_imports(bytes: &[u8], renames: &[(&str, &str)]) -> Result<Vec<u8>, String> {
    use wasm_encoder::reencode::{ReencodeComponent, RoundtripReencoder};
    use wasmparser::{Chunk, Parser, Payload};
    let malformed = |e: &dyn std::fmt::Display| format!("cannot rename a member's imports: {e}");
    let mut out = wasm_encoder::Component::new();
    let mut parser = Parser::new(0);
    let mut at = 0;
    loop {
        let Chunk::Parsed { consumed, payload } = parser.parse(&bytes[at..], true).map_err(|e| malformed(&e))? else {
            return Err(malformed(&"the component ends early"));
        };
        at += consumed;
        match payload {
            Payload::Version { .. } => {}
            Payload::End(_) => break,
            Payload::ComponentImportSection(reader) => {
                let mut section = wasm_encoder::ComponentImportSection::new();
                for import in reader {
                    let import = import.map_err(|e| malformed(&e))?;
                    let ty = RoundtripReencoder.component_type_ref(import.ty).map_err(|e| malformed(&e))?;
                    match renames.iter().find(|(from, _)| *from == import.name.name) {
                        Some((_, to)) => section.import(*to, ty),
                        None => section.import(import.name, ty),
                    };
                }
                out.section(&section);
            }
            other => {
                let (id, range) = other.as_section().ok_or_else(|| malformed(&"an unexpected payload"))?;
                if matches!(other, Payload::ModuleSection { .. } | Payload::ComponentSection { .. }) {
                    // Copied whole, not parsed into (the parser has moved past it).
                    at = range.end;
                }
                out.section(&wasm_encoder::RawSection { id, data: &bytes[range] });
            }
        }
    }
    Ok(out.finish())
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
