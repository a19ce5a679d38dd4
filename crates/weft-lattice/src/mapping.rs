//! Between wasmCloud v2's messages and weft's types (docs/lattice.md has the
//! table, field by field).
//!
//! A wasmCloud `Workload` becomes a `WorkloadSpec`. What wasmCloud has no field
//! for (links and their modes, weft's limits, arguments, restart backoff) travels
//! as a documented extension: the annotation [`SPEC_ANNOTATION`] holding the whole
//! weft spec as JSON. A weft client sends it (and the wasmCloud fields beside it);
//! a wasmCloud client leaves it out, and the wasmCloud fields are mapped.

use std::path::PathBuf;

use indexmap::IndexMap;
use weft_runtime::interface::InterfaceName;
use weft_runtime::limits::ByteSize;
use weft_runtime::manifest::{
    ComponentSpec, EmptyDirVolume, HostInterfaceSpec, HostPathVolume, RestartPolicy, Source, VolumeMount, VolumeSpec,
};
use weft_runtime::{Heartbeat, WorkloadSpec, WorkloadState as State};

use crate::wire;

/// The annotation that carries a whole weft `WorkloadSpec` (JSON).
pub const SPEC_ANNOTATION: &str = "weft.dev/spec";

/// The spec a start request asks for, or what is wrong with it.
pub fn workload_spec(workload: &wire::Workload) -> Result<WorkloadSpec, String> {
    if let Some(json) = workload.annotations.get(SPEC_ANNOTATION) {
        let spec = WorkloadSpec::from_json(json).map_err(|e| format!("annotation `{SPEC_ANNOTATION}`: {e}"))?;
        if spec.name != workload.name || spec.namespace != namespace(workload) {
            return Err(format!(
                "annotation `{SPEC_ANNOTATION}` names workload `{}/{}`, the request `{}/{}`",
                spec.namespace,
                spec.name,
                namespace(workload),
                workload.name
            ));
        }
        return Ok(spec);
    }
    let mut problems = Vec::new();
    let mut spec = WorkloadSpec {
        name: workload.name.clone(),
        namespace: namespace(workload),
        annotations: workload.annotations.clone(),
        ..WorkloadSpec::default()
    };
    let world = workload.wit_world.clone().unwrap_or_default();
    for (i, c) in world.components.iter().enumerate() {
        let name = if c.name.is_empty() { format!("component-{i}") } else { c.name.clone() };
        spec.components.push(component(
            &name,
            &c.image,
            c.local_resources.as_ref(),
            &c.image_pull_secret,
            &mut problems,
        ));
    }
    if let Some(s) = &workload.service {
        let mut service =
            component("service", &s.image, s.local_resources.as_ref(), &s.image_pull_secret, &mut problems);
        let max_restarts = u32::try_from(s.max_restarts).unwrap_or(u32::MAX);
        service.restart = Some(RestartPolicy { max_restarts, ..RestartPolicy::default() });
        spec.service = Some(service);
    }
    for interface in &world.host_interfaces {
        host_interfaces(interface, &mut spec.host_interfaces, &mut problems);
    }
    for v in &workload.volumes {
        spec.volumes.push(match &v.host_path {
            Some(h) => VolumeSpec {
                name: v.name.clone(),
                host_path: Some(HostPathVolume { path: PathBuf::from(&h.local_path), read_only: false }),
                empty_dir: None,
            },
            None => VolumeSpec { name: v.name.clone(), host_path: None, empty_dir: Some(EmptyDirVolume {}) },
        });
    }
    match problems.is_empty() {
        true => Ok(spec),
        false => Err(problems.join("; ")),
    }
}

fn namespace(workload: &wire::Workload) -> String {
    if workload.namespace.is_empty() { "default".into() } else { workload.namespace.clone() }
}

/// An `image` names a file when it is a path (`/…`, `./…`, `file://…`), an
/// uploaded component when it is `digest://sha256:…`, an OCI artifact otherwise
/// (wasmCloud's bare references, `oci://…` too).
fn source(image: &str) -> Source {
    if let Some(digest) = image.strip_prefix(weft_runtime::manifest::DIGEST_SCHEME) {
        return Source::Digest(digest.to_string());
    }
    if let Some(path) = image.strip_prefix("file://") {
        return Source::Path(PathBuf::from(path));
    }
    if image.starts_with('/') || image.starts_with("./") || image.starts_with("../") {
        return Source::Path(PathBuf::from(image));
    }
    Source::Oci(image.strip_prefix("oci://").unwrap_or(image).to_string())
}

fn component(
    name: &str,
    image: &str,
    resources: Option<&wire::LocalResources>,
    secret: &Option<wire::ImagePullSecret>,
    problems: &mut Vec<String>,
) -> ComponentSpec {
    let resources = resources.cloned().unwrap_or_default();
    let mut unsupported = Vec::new();
    // Refused rather than ignored: dropping an allow-list or a credential would
    // run something else than what was asked.
    for (field, set) in [
        ("localResources.allowedHosts", !resources.allowed_hosts.is_empty()),
        ("localResources.allowedIpNameLookups", !resources.allowed_ip_name_lookups.is_empty()),
        ("localResources.allowedHostLoopbackPorts", !resources.allowed_host_loopback_ports.is_empty()),
        ("localResources.cpuLimit", resources.cpu_limit > 0),
        ("imagePullSecret", secret.is_some()),
    ] {
        if set {
            unsupported.push(field);
        }
    }
    if !unsupported.is_empty() {
        problems.push(format!("component `{name}`: weft does not take {} yet", unsupported.join(", ")));
    }
    let mut spec = ComponentSpec {
        name: name.to_string(),
        source: source(image),
        config: resources.config,
        env: resources.environment,
        volume_mounts: resources
            .volume_mounts
            .into_iter()
            .map(|m| VolumeMount { name: m.name, mount_path: m.mount_path, read_only: m.read_only })
            .collect(),
        ..ComponentSpec::default()
    };
    if resources.memory_limit_mb > 0 {
        spec.limits.memory = Some(ByteSize(u64::from(resources.memory_limit_mb.unsigned_abs()) << 20));
    }
    spec
}

/// One weft entry per interface of a wasmCloud `WitInterface`. Config values
/// that are JSON arrays or objects (weft's `routes`, `sharedBuckets`) are read
/// as JSON; wasi:http's `host` (and `host-aliases`) become routes on `/*`.
fn host_interfaces(interface: &wire::WitInterface, out: &mut Vec<HostInterfaceSpec>, problems: &mut Vec<String>) {
    let mut config: IndexMap<String, serde_json::Value> = IndexMap::new();
    for (key, value) in &interface.config {
        let parsed = serde_json::from_str::<serde_json::Value>(value).ok().filter(|v| v.is_array() || v.is_object());
        config.insert(key.clone(), parsed.unwrap_or_else(|| serde_json::Value::String(value.clone())));
    }
    let http = interface.namespace == "wasi" && interface.package == "http";
    if http && !config.contains_key("routes") {
        let hosts: Vec<String> = config
            .shift_remove("host")
            .and_then(|h| h.as_str().map(String::from))
            .into_iter()
            .chain(
                config
                    .shift_remove("host-aliases")
                    .and_then(|a| a.as_str().map(|a| a.split(',').map(|h| h.trim().to_string()).collect::<Vec<_>>()))
                    .unwrap_or_default(),
            )
            .filter(|h| !h.is_empty())
            .collect();
        if !hosts.is_empty() {
            let routes = hosts.iter().map(|h| serde_json::json!({ "host": h, "path": "/*" })).collect();
            config.insert("routes".into(), serde_json::Value::Array(routes));
        }
    }
    let version = if interface.version.is_empty() { String::new() } else { format!("@{}", interface.version) };
    for name in &interface.interfaces {
        let text = format!("{}:{}/{name}{version}", interface.namespace, interface.package);
        if InterfaceName::parse(&text).is_none() {
            problems.push(format!("host interface `{text}` is not `namespace:package/interface@version`"));
            continue;
        }
        out.push(HostInterfaceSpec { interface: text, component: None, config: config.clone() });
    }
}

/// The wasmCloud `Workload` for a weft spec: the wasmCloud fields as far as they
/// go, and the whole spec in [`SPEC_ANNOTATION`]. Relative paths are made
/// absolute against the spec's directory first.
pub fn wire_workload(spec: &WorkloadSpec) -> wire::Workload {
    let mut spec = spec.clone();
    for c in spec.components.iter_mut().chain(spec.service.iter_mut()) {
        if let Source::Path(path) = &c.source {
            c.source = Source::Path(absolute(&spec_dir(&spec.base_dir), path));
        }
    }
    for v in &mut spec.volumes {
        if let Some(h) = &mut v.host_path {
            h.path = absolute(&spec_dir(&spec.base_dir), &h.path);
        }
    }
    let image = |c: &ComponentSpec| match &c.source {
        Source::Path(p) => format!("file://{}", p.display()),
        Source::Oci(r) => r.clone(),
        digest @ Source::Digest(_) => digest.to_string(),
    };
    let resources = |c: &ComponentSpec| wire::LocalResources {
        memory_limit_mb: c.limits.memory.map_or(0, |m| i32::try_from(m.0.div_ceil(1 << 20)).unwrap_or(i32::MAX)),
        config: c.config.clone(),
        environment: c.env.clone(),
        volume_mounts: c
            .volume_mounts
            .iter()
            .map(|m| wire::VolumeMount {
                name: m.name.clone(),
                mount_path: m.mount_path.clone(),
                read_only: m.read_only,
            })
            .collect(),
        ..wire::LocalResources::default()
    };
    let mut annotations = spec.annotations.clone();
    annotations.insert(SPEC_ANNOTATION.into(), serde_json::to_string(&spec).expect("a spec serialises"));
    wire::Workload {
        namespace: spec.namespace.clone(),
        name: spec.name.clone(),
        annotations,
        service: spec.service.as_ref().map(|s| wire::Service {
            image: image(s),
            local_resources: Some(resources(s)),
            max_restarts: u64::from(s.restart.clone().unwrap_or_default().max_restarts),
            ..wire::Service::default()
        }),
        wit_world: Some(wire::WitWorld {
            components: spec
                .components
                .iter()
                .map(|c| wire::Component {
                    image: image(c),
                    local_resources: Some(resources(c)),
                    name: c.name.clone(),
                    ..wire::Component::default()
                })
                .collect(),
            host_interfaces: Vec::new(),
        }),
        volumes: spec
            .volumes
            .iter()
            .map(|v| wire::Volume {
                name: v.name.clone(),
                host_path: v
                    .host_path
                    .as_ref()
                    .map(|h| wire::HostPathVolume { local_path: h.path.display().to_string() }),
                empty_dir: v.empty_dir.as_ref().map(|_| wire::EmptyDirVolume {}),
            })
            .collect(),
    }
}

fn spec_dir(base: &Option<PathBuf>) -> PathBuf {
    base.clone().or_else(|| std::env::current_dir().ok()).unwrap_or_default()
}

fn absolute(base: &std::path::Path, path: &std::path::Path) -> PathBuf {
    if path.is_relative() { base.join(path) } else { path.to_path_buf() }
}

/// weft's state on the wire. A stopped workload is `STOPPING` (wasmCloud's host
/// answers a stop so and forgets the id); a failed one `ERROR`.
pub fn wire_state(state: State) -> wire::WorkloadState {
    match state {
        State::Starting => wire::WorkloadState::Starting,
        State::Running => wire::WorkloadState::Running,
        State::Completed => wire::WorkloadState::Completed,
        State::Stopping | State::Stopped => wire::WorkloadState::Stopping,
        State::Failed => wire::WorkloadState::Error,
    }
}

/// The wire's state as weft's, for a status that exists (`NOT_FOUND` and
/// `ERROR` of a start are errors, not states).
pub fn weft_state(state: wire::WorkloadState, message: &str) -> State {
    match state {
        wire::WorkloadState::Starting | wire::WorkloadState::Unspecified => State::Starting,
        wire::WorkloadState::Running => State::Running,
        wire::WorkloadState::Completed => State::Completed,
        wire::WorkloadState::Stopping if message == STOPPED => State::Stopped,
        wire::WorkloadState::Stopping => State::Stopping,
        wire::WorkloadState::Error | wire::WorkloadState::NotFound => State::Failed,
    }
}

/// The message of a workload that has stopped (its state on the wire: `STOPPING`).
pub const STOPPED: &str = "Workload stopped";

/// weft's heartbeat as wasmCloud's: interfaces grouped by package and version.
/// Interface names grouped as wasmCloud lists them: one entry per package and version.
fn wit_interfaces(names: &[String]) -> Vec<wire::WitInterface> {
    let mut grouped: IndexMap<(String, String, String), Vec<String>> = IndexMap::new();
    for text in names {
        if let Some(i) = InterfaceName::parse(text) {
            let version = i.version.map(|v| v.to_string()).unwrap_or_default();
            grouped.entry((i.namespace, i.package, version)).or_default().push(i.interface);
        }
    }
    grouped
        .into_iter()
        .map(|((namespace, package, version), interfaces)| wire::WitInterface {
            namespace,
            package,
            version,
            interfaces,
            ..wire::WitInterface::default()
        })
        .collect()
}

/// Interface names of wasmCloud's grouped entries.
fn interface_names(groups: &[wire::WitInterface]) -> Vec<String> {
    let mut names = Vec::new();
    for i in groups {
        let version = if i.version.is_empty() { String::new() } else { format!("@{}", i.version) };
        names.extend(i.interfaces.iter().map(|name| format!("{}:{}/{name}{version}", i.namespace, i.package)));
    }
    names
}

pub fn wire_heartbeat(beat: &Heartbeat, started_at: &str) -> wire::HostHeartbeat {
    wire::HostHeartbeat {
        id: beat.host_id.clone(),
        hostname: hostname(),
        friendly_name: beat.friendly_name.clone(),
        version: beat.version.clone(),
        labels: beat.labels.clone(),
        started_at: Some(started_at.to_string()),
        os_arch: std::env::consts::ARCH.into(),
        os_name: std::env::consts::OS.into(),
        os_kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|k| k.trim().to_string())
            .unwrap_or_default(),
        system_cpu_usage: cpu_usage(),
        system_memory_total: meminfo("MemTotal:"),
        system_memory_free: meminfo("MemAvailable:"),
        component_count: beat.components as u64,
        workload_count: beat.workloads as u64,
        imports: wit_interfaces(&beat.interfaces),
        exports: wit_interfaces(&beat.exports),
        http_port: beat.http_port.map(u32::from).unwrap_or_default(),
        environment: beat.environment.clone().unwrap_or_default(),
    }
}

/// wasmCloud's heartbeat as weft's (what a client learns of a remote host).
pub fn weft_heartbeat(beat: &wire::HostHeartbeat, uptime_secs: u64) -> Heartbeat {
    Heartbeat {
        host_id: beat.id.clone(),
        friendly_name: beat.friendly_name.clone(),
        version: beat.version.clone(),
        uptime_secs,
        labels: beat.labels.clone(),
        workloads: usize::try_from(beat.workload_count).unwrap_or(usize::MAX),
        components: usize::try_from(beat.component_count).unwrap_or(usize::MAX),
        interfaces: interface_names(&beat.imports),
        exports: interface_names(&beat.exports),
        http_port: u16::try_from(beat.http_port).ok().filter(|p| *p != 0),
        environment: Some(beat.environment.clone()).filter(|e| !e.is_empty()),
        allocator: weft_runtime::engine::AllocatorKind::OnDemand,
        // wasmCloud's heartbeat does not carry them.
        engines: Vec::new(),
    }
}

/// A `/proc/meminfo` line's value, in bytes (0 where there is none).
fn meminfo(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib = text.lines().find_map(|l| l.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok());
    kib.unwrap_or(0).saturating_mul(1024)
}

/// The machine's CPU use, in percent of all its CPUs, since the previous call
/// (the previous heartbeat; the first time, since boot), from `/proc/stat`.
fn cpu_usage() -> f32 {
    static PREVIOUS: std::sync::Mutex<(u64, u64)> = std::sync::Mutex::new((0, 0));
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else { return 0.0 };
    let fields: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    let mut previous = PREVIOUS.lock().unwrap();
    let (total_delta, idle_delta) = (total.saturating_sub(previous.0), idle.saturating_sub(previous.1));
    *previous = (total, idle);
    if total_delta == 0 {
        return 0.0;
    }
    (total_delta.saturating_sub(idle_delta) as f64 * 100.0 / total_delta as f64) as f32
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wasmcloud_workload_maps_onto_a_spec() {
        let workload: wire::Workload = serde_json::from_str(
            r#"{"namespace":"shop","name":"api","witWorld":{
                "components":[{"image":"/srv/api.wasm","name":"api","localResources":{"memoryLimitMb":64,
                   "environment":{"A":"b"},"volumeMounts":[{"name":"d","mountPath":"/d","readOnly":true}]}}],
                "hostInterfaces":[{"namespace":"wasi","package":"http","version":"0.2.0","interfaces":["incoming-handler"],
                   "config":{"host":"api.example.com"}},
                  {"namespace":"wasi","package":"keyvalue","version":"0.2.0-draft","interfaces":["store","atomics"],
                   "config":{"sharedBuckets":"[\"carts\"]"}}]},
              "service":{"image":"ghcr.io/acme/svc:1","maxRestarts":"2"},
              "volumes":[{"name":"d","hostPath":{"localPath":"/srv/d"}},{"name":"e"}]}"#,
        )
        .unwrap();
        let spec = workload_spec(&workload).unwrap();
        assert_eq!((spec.namespace.as_str(), spec.name.as_str()), ("shop", "api"));
        let api = &spec.components[0];
        assert_eq!(api.source, Source::Path("/srv/api.wasm".into()));
        assert_eq!(api.limits.memory, Some(ByteSize(64 << 20)));
        assert!(api.volume_mounts[0].read_only);
        let service = spec.service.as_ref().unwrap();
        assert_eq!(service.source, Source::Oci("ghcr.io/acme/svc:1".into()));
        assert_eq!(service.restart.as_ref().unwrap().max_restarts, 2);
        let interfaces: Vec<&str> = spec.host_interfaces.iter().map(|h| h.interface.as_str()).collect();
        assert_eq!(
            interfaces,
            [
                "wasi:http/incoming-handler@0.2.0",
                "wasi:keyvalue/store@0.2.0-draft",
                "wasi:keyvalue/atomics@0.2.0-draft"
            ]
        );
        assert_eq!(
            spec.host_interfaces[0].config["routes"],
            serde_json::json!([{ "host": "api.example.com", "path": "/*" }])
        );
        assert_eq!(spec.host_interfaces[1].config["sharedBuckets"], serde_json::json!(["carts"]));
        assert!(spec.volumes[1].empty_dir.is_some());
    }

    #[test]
    fn what_weft_cannot_honour_is_refused_not_dropped() {
        let workload: wire::Workload = serde_json::from_str(
            r#"{"name":"w","witWorld":{"components":[{"image":"/a.wasm","name":"a",
                "localResources":{"allowedHosts":["*.example.com"]},"imagePullSecret":{"username":"u","password":"p"}}]}}"#,
        )
        .unwrap();
        let refused = workload_spec(&workload).unwrap_err();
        assert!(refused.contains("allowedHosts") && refused.contains("imagePullSecret"), "{refused}");
    }

    #[test]
    fn a_weft_spec_travels_whole_in_its_annotation() {
        let mut spec = WorkloadSpec::from_yaml(
            "name: w\ncomponents: [{ name: a, source: a.wasm, args: [x], limits: { cpuTime: 1s } }]\n",
        )
        .unwrap();
        spec.base_dir = Some("/srv/app".into());
        let wire = wire_workload(&spec);
        assert_eq!(wire.wit_world.as_ref().unwrap().components[0].image, "file:///srv/app/a.wasm");
        let back = workload_spec(&wire).unwrap();
        assert_eq!(back.components[0].args, ["x"]);
        assert_eq!(back.components[0].source, Source::Path("/srv/app/a.wasm".into()));
        let mut forged = wire.clone();
        forged.name = "other".into();
        assert!(workload_spec(&forged).unwrap_err().contains("names workload `default/w`"));
    }

    #[test]
    fn a_heartbeat_crosses_the_wire_whole() {
        let beat = Heartbeat {
            host_id: "h-1".into(),
            friendly_name: "edge".into(),
            version: "0.1.0".into(),
            uptime_secs: 0,
            labels: IndexMap::from([("zone".to_string(), "a".to_string())]),
            workloads: 2,
            components: 3,
            interfaces: vec!["wasi:keyvalue/store@0.2.0-draft".into(), "wasi:keyvalue/atomics@0.2.0-draft".into()],
            exports: vec!["wasi:http/incoming-handler@0.2.0".into()],
            http_port: Some(8080),
            environment: Some("tenant-a".into()),
            allocator: weft_runtime::engine::AllocatorKind::OnDemand,
            engines: Vec::new(),
        };
        let wire = wire_heartbeat(&beat, "2026-12-03T00:00:00Z");
        let json = serde_json::to_value(&wire).unwrap();
        assert_eq!(json["httpPort"], 8080);
        assert_eq!(json["environment"], "tenant-a");
        assert_eq!(json["exports"][0]["interfaces"][0], "incoming-handler");
        assert_eq!(json["imports"][0]["interfaces"], serde_json::json!(["store", "atomics"]));
        let back = weft_heartbeat(&wire, 0);
        assert_eq!((&back.interfaces, &back.exports), (&beat.interfaces, &beat.exports));
        assert_eq!((back.http_port, back.environment), (Some(8080), Some("tenant-a".to_string())));
        // Unset, they are left out, as proto3 JSON leaves defaults out.
        let bare = Heartbeat { http_port: None, environment: None, exports: Vec::new(), ..beat };
        let json = serde_json::to_value(wire_heartbeat(&bare, "2026-12-03T00:00:00Z")).unwrap();
        assert!(json.get("httpPort").is_none() && json.get("environment").is_none(), "{json}");
    }
}
