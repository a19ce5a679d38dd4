//! The manifests in the docs are ones weft accepts: every YAML block of
//! docs/manifest.md and docs/host.md that is a manifest (or its `hostInterfaces`
//! part) parses, and each `hostInterfaces` entry is accepted by the plugin that
//! would be bound for it, through the same `validate` step a workload goes through.

use std::path::Path;

use weft_runtime::WorkloadSpec;
use weft_runtime::interface::ItemName;
use weft_runtime::plugin::{BindingSettings, ComponentIdentity, PluginRegistry};
use weft_runtime::workload::WorkloadId;

fn yaml_blocks(doc: &str) -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs").join(doc)).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```yaml") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[tokio::test(flavor = "multi_thread")]
async fn the_docs_manifests_are_accepted() {
    let plugins = PluginRegistry::new(weft_plugins::load(&weft_plugins::Settings::default()).await.unwrap());
    let mut checked = 0;
    for doc in ["manifest.md", "host.md"] {
        for block in yaml_blocks(doc) {
            let is_manifest = block.lines().any(|l| l.starts_with("components:") || l.starts_with("service:"));
            let manifest = if is_manifest {
                block.clone()
            } else if block.starts_with("hostInterfaces:") {
                format!("name: fragment\n{block}")
            } else {
                continue; // a host configuration file, or a plugin's settings
            };
            let spec = WorkloadSpec::from_yaml(&manifest).unwrap_or_else(|e| panic!("{doc}: {e}\n{block}"));
            assert!(spec.unknown_fields.is_empty(), "{doc}: unknown fields {:?}\n{block}", spec.unknown_fields);
            for hi in &spec.host_interfaces {
                let name = ItemName::parse(&hi.interface);
                if weft_runtime::wasi::provides(&name) {
                    // Outgoing HTTP: the runtime's own policy, tested with it.
                    continue;
                }
                let bound: Vec<_> = plugins.providers_of(&name).into_iter().chain(plugins.drivers_of(&name)).collect();
                assert!(!bound.is_empty(), "{doc}: no plugin serves `{}`", hi.interface);
                let settings = BindingSettings {
                    identity: ComponentIdentity {
                        workload_id: WorkloadId("docs".into()),
                        workload: "docs".into(),
                        namespace: "default".into(),
                        component: hi.component.as_deref().unwrap_or("c").into(),
                    },
                    imports: vec![hi.interface.clone()],
                    exports: vec![hi.interface.clone()],
                    config: vec![(hi.interface.clone(), hi.config.clone())],
                    component_config: Default::default(),
                };
                for plugin in bound {
                    if let Err(e) = plugin.validate(&settings) {
                        panic!("{doc}: plugin `{}` refuses `{}`: {e}\n{block}", plugin.id(), hi.interface);
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 5, "only {checked} entries checked: did the docs lose their examples?");
}
