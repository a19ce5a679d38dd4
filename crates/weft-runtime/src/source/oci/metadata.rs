//! What `weft oci push` says about a component: its top-level imports and
//! exports (the artifact's config) and its `wasm-metadata` custom sections
//! (the manifest's annotations).

use std::collections::BTreeMap;

use wasmparser::{Parser, Payload};

#[derive(Debug, Default)]
pub struct ComponentMetadata {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// `org.opencontainers.image.*` annotations.
    pub annotations: BTreeMap<String, String>,
}

/// `wasm-metadata`'s custom sections and the annotation each becomes.
const SECTIONS: [(&str, &str); 7] = [
    ("authors", "org.opencontainers.image.authors"),
    ("description", "org.opencontainers.image.description"),
    ("licenses", "org.opencontainers.image.licenses"),
    ("source", "org.opencontainers.image.source"),
    ("homepage", "org.opencontainers.image.url"),
    ("revision", "org.opencontainers.image.revision"),
    ("version", "org.opencontainers.image.version"),
];

pub fn read(bytes: &[u8]) -> Result<ComponentMetadata, String> {
    if !wasmparser::Parser::is_component(bytes) {
        return Err("not a WebAssembly component".into());
    }
    let mut meta = ComponentMetadata::default();
    // Sections of the outer component only: nested modules and components
    // have imports, exports and metadata of their own.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| format!("not a valid component: {e}"))? {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(section) if depth == 1 => {
                for import in section {
                    meta.imports.push(import.map_err(|e| e.to_string())?.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(section) if depth == 1 => {
                for export in section {
                    meta.exports.push(export.map_err(|e| e.to_string())?.name.name.to_string());
                }
            }
            Payload::CustomSection(section) if depth == 1 => {
                let annotation = SECTIONS.iter().find(|(name, _)| *name == section.name()).map(|(_, a)| a);
                if let (Some(annotation), Ok(text)) = (annotation, std::str::from_utf8(section.data())) {
                    meta.annotations.insert(annotation.to_string(), text.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(meta)
}
