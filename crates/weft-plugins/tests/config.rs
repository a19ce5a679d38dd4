//! wasi:config from the manifest over host defaults; wasi:logging into `tracing`.

mod common;

use std::collections::BTreeMap;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_component_sees_its_config_over_the_host_defaults() {
    let settings = weft_plugins::Settings {
        config: weft_plugins::config::Settings {
            defaults: BTreeMap::from([("region".into(), "eu-west".into()), ("tier".into(), "free".into())]),
        },
        ..Default::default()
    };
    let t = host_with(settings).await;
    let w = t
        .start_ok(&format!(
            r#"name: configured
components:
  - {{ name: a, source: {CONFIG_PROBE}, args: [tier, region, missing], config: {{ tier: gold, colour: blue }} }}
  - {{ name: b, source: {CONFIG_PROBE}, args: [tier, colour] }}
"#
        ))
        .await;
    w.run("a").await.unwrap();
    w.run("b").await.unwrap();
    assert_eq!(
        t.stdout("a"),
        ["tier=gold", "region=eu-west", "missing unset", "all: colour=blue region=eu-west tier=gold"]
    );
    // Another component's config is not visible.
    assert_eq!(t.stdout("b"), ["tier=free", "colour unset", "all: region=eu-west tier=free"]);
}

/// One `tracing` event: its target, level and fields as text.
#[derive(Debug, Clone)]
struct Event {
    target: String,
    level: tracing::Level,
    fields: BTreeMap<String, String>,
}

#[derive(Default, Clone)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<Event>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Captured {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Fields<'a>(&'a mut BTreeMap<String, String>);
        impl tracing::field::Visit for Fields<'_> {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.insert(field.name().to_string(), format!("{value:?}"));
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0.insert(field.name().to_string(), value.to_string());
            }
        }
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let meta = event.metadata();
        self.0.lock().unwrap().push(Event { target: meta.target().to_string(), level: *meta.level(), fields });
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn log_records_become_tracing_events_naming_workload_and_component() {
    use tracing_subscriber::layer::SubscriberExt;
    let captured = Captured::default();
    // The only test in this binary that installs a subscriber (a global one).
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(captured.clone())).unwrap();
    let t = host_with(weft_plugins::Settings::default()).await;
    let w = t.start_ok(&format!("name: logged\ncomponents:\n  - {{ name: probe, source: {CONFIG_PROBE} }}\n")).await;
    w.run("probe").await.unwrap();
    let guest: Vec<Event> = captured.0.lock().unwrap().iter().filter(|e| e.target == "guest").cloned().collect();
    // The subscriber is global, so it also sees the guests of tests running beside
    // this one: every guest event names its workload and component, and this
    // workload's are exactly its guest's two records.
    assert!(guest.iter().all(|e| e.fields.contains_key("workload") && e.fields.contains_key("component")), "{guest:?}");
    let summary: Vec<(tracing::Level, &str, &str, &str, &str)> = guest
        .iter()
        .filter(|e| e.fields.get("workload").is_some_and(|w| w == "logged"))
        .map(|e| {
            let f = |k: &str| e.fields.get(k).map(String::as_str).unwrap_or("<missing>");
            (e.level, f("workload"), f("component"), f("context"), f("message"))
        })
        .collect();
    assert_eq!(
        summary,
        [
            (tracing::Level::INFO, "logged", "probe", "probe", "config read"),
            (tracing::Level::WARN, "logged", "probe", "probe", "a warning"),
        ]
    );
}
