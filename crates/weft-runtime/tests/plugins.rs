//! A host plugin written outside weft's crates, against the public `HostPlugin`
//! trait only: it serves an import, is told of each component bound to it (and may
//! refuse one), and follows the host's life.

mod common;

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::*;
use wasmtime::component::LinkerInstance;
use weft_runtime::interface::InterfaceName;
use weft_runtime::plugin::{Binding, BoxFuture, ComponentIdentity, HostPlugin, PluginWorld, Whose};
use weft_runtime::store::StoreState;
use weft_runtime::workload::Provider;
use weft_runtime::{HostApi, WorkloadState};

const GREETER: &str = "weft:fixtures/greeter@0.1.0";

/// Serves `weft:fixtures/greeter` from the host, with a greeting each workload
/// chooses in its `hostInterfaces` config.
#[derive(Default)]
struct Greetings {
    greetings: Mutex<HashMap<ComponentIdentity, String>>,
    events: Mutex<Vec<String>>,
}

impl Greetings {
    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    fn log(&self, event: String) {
        self.events.lock().unwrap().push(event);
    }
}

impl HostPlugin for Greetings {
    fn id(&self) -> &str {
        "greetings"
    }

    fn world(&self) -> PluginWorld {
        PluginWorld { imports: vec![InterfaceName::parse(GREETER).unwrap()], exports: vec![] }
    }

    fn start(&self) -> BoxFuture<'_, Result<(), String>> {
        self.log("start".into());
        Box::pin(async { Ok(()) })
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        self.log("stop".into());
        Box::pin(async {})
    }

    fn bind<'a>(&'a self, binding: &'a Binding) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let id = &binding.identity;
            let config = binding.config_for(GREETER);
            let greeting = config.and_then(|c| c.get("greeting")).and_then(|g| g.as_str()).unwrap_or("Hello");
            if greeting.is_empty() {
                return Err("an empty greeting greets nobody".to_string());
            }
            self.log(format!("bind {}/{} imports {:?}", id.workload, id.component, binding.imports));
            self.greetings.lock().unwrap().insert(id.clone(), greeting.to_string());
            Ok(())
        })
    }

    fn unbind<'a>(&'a self, identity: &'a ComponentIdentity) -> BoxFuture<'a, ()> {
        self.log(format!("unbind {}/{}", identity.workload, identity.component));
        self.greetings.lock().unwrap().remove(identity);
        Box::pin(async {})
    }

    fn add_to_linker(&self, instance: &mut LinkerInstance<StoreState>, _: &str, whose: Whose) -> wasmtime::Result<()> {
        instance.func_wrap("greet", move |cx, (name,): (String,)| {
            let state = cx.data();
            let caller = state.caller(whose);
            let plugin = state.plugin::<Greetings>("greetings").expect("the plugin is loaded");
            let greeting = plugin.greetings.lock().unwrap().get(caller).cloned().expect("the caller is bound");
            Ok((format!("{greeting}, {name}, from the host to {}/{}", caller.workload, caller.component),))
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

fn workload(name: &str, greeting: &str) -> String {
    format!(
        "name: {name}\ncomponents:\n  - {{ name: client, source: {GREETER_CLIENT}, args: [ada] }}\n\
         hostInterfaces:\n  - {{ interface: \"{GREETER}\", component: client, config: {{ greeting: \"{greeting}\" }} }}\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_from_outside_weft_serves_an_import_and_follows_the_host_and_workload_lives() {
    let plugin = Arc::new(Greetings::default());
    let t = host_with_plugins(Some(shared_cache()), vec![plugin.clone()]).await;
    assert_eq!(plugin.events(), ["start"]);
    assert!(t.host.heartbeat().await.unwrap().interfaces.iter().any(|i| i == GREETER));

    let w = t.start_ok(&workload("howdy", "Howdy")).await;
    let links = w.plan().imports_of("client");
    let link = links.iter().find(|l| l.import == GREETER).expect("the import is in the plan");
    assert_eq!(link.provider, Provider::Plugin { plugin: "greetings".into() });
    w.run("client").await.unwrap();
    assert_eq!(t.stdout("client"), ["Howdy, ada, from the host to howdy/client"]);

    t.host.workload_stop(w.id()).await.unwrap();
    assert_eq!(
        plugin.events(),
        ["start", &format!("bind howdy/client imports [\"{GREETER}\"]"), "unbind howdy/client"]
    );
    t.host.shutdown().await;
    assert_eq!(plugin.events().last().map(String::as_str), Some("stop"));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_refusal_is_listed_and_the_bindings_made_are_undone() {
    let plugin = Arc::new(Greetings::default());
    let t = host_with_plugins(Some(shared_cache()), vec![plugin.clone()]).await;
    let (mut components, mut entries) = (String::new(), String::new());
    for (name, greeting) in [("first", ""), ("fine", "Hi"), ("last", "")] {
        components.push_str(&format!("  - {{ name: {name}, source: {GREETER_CLIENT} }}\n"));
        entries.push_str(&format!(
            "  - {{ interface: \"{GREETER}\", component: {name}, config: {{ greeting: \"{greeting}\" }} }}\n"
        ));
    }
    let manifest = format!("name: mute\ncomponents:\n{components}hostInterfaces:\n{entries}");
    let rejection = t.rejection(&manifest).await;
    let text = rejection.to_string();
    assert_eq!(rejection.problems.len(), 2, "{text}");
    for refused in ["first", "last"] {
        assert!(
            text.contains(&format!(
                "component `{refused}`: plugin `greetings` refused it: an empty greeting greets nobody"
            )),
            "{text}"
        );
    }
    assert!(!text.contains("`fine`"), "{text}");
    // The component the plugin accepted was unbound again: nothing of the workload is left.
    assert_eq!(
        plugin.events()[1..],
        [format!("bind mute/fine imports [\"{GREETER}\"]"), "unbind mute/fine".to_string()]
    );
    assert!(plugin.greetings.lock().unwrap().is_empty());
    assert_eq!(t.host.heartbeat().await.unwrap().workloads, 0);

    // The same host accepts the workload once every greeting is set.
    let w = t.start_ok(&workload("mute", "Hi")).await;
    assert_eq!(w.state(), WorkloadState::Running);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_plugin_the_import_is_unresolved_and_named() {
    let t = host().await;
    let text = t.rejection(&workload("alone", "Hi")).await.to_string();
    assert!(text.contains(GREETER), "{text}");
    assert!(text.contains("client"), "{text}");
}
