//! Volumes: `hostPath` directories of the host and `emptyDir` scratch directories,
//! mounted into components as WASI preopens.

use std::path::{Path, PathBuf};

use crate::error::Problem;
use crate::manifest::{ComponentSpec, WorkloadSpec};
use crate::wasi::Preopen;

#[derive(Debug, Clone)]
pub(crate) struct Volume {
    pub name: String,
    pub path: PathBuf,
    pub read_only: bool,
    /// Created when the workload starts, deleted when it stops.
    pub ephemeral: bool,
}

/// Checks the declared volumes; emptyDirs get a path under `scratch` but are not
/// created yet (validation allocates nothing).
pub(crate) fn plan(spec: &WorkloadSpec, scratch: &Path, problems: &mut Vec<Problem>) -> Vec<Volume> {
    let mut volumes: Vec<Volume> = Vec::new();
    for v in &spec.volumes {
        let subject = format!("volume `{}`", v.name);
        if v.name.is_empty() || !v.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            problems.push(Problem::new(&subject, "the name must be non-empty ASCII letters, digits, `-` or `_`"));
            continue;
        }
        if volumes.iter().any(|o| o.name == v.name) {
            problems.push(Problem::new(&subject, "declared more than once"));
            continue;
        }
        match (&v.host_path, &v.empty_dir) {
            (Some(host), None) => {
                let path = spec.resolve_path(&host.path);
                if !path.is_dir() {
                    problems.push(Problem::new(
                        &subject,
                        format!("hostPath {} is not an existing directory", path.display()),
                    ));
                    continue;
                }
                volumes.push(Volume { name: v.name.clone(), path, read_only: host.read_only, ephemeral: false });
            }
            (None, Some(_)) => volumes.push(Volume {
                name: v.name.clone(),
                path: scratch.join(&v.name),
                read_only: false,
                ephemeral: true,
            }),
            _ => problems.push(Problem::new(&subject, "needs exactly one of `hostPath` or `emptyDir`")),
        }
    }
    volumes
}

/// A component's mounts as preopens; unknown volumes and bad mount paths are problems.
pub(crate) fn preopens(
    component: &ComponentSpec,
    volumes: &[Volume],
    declared: &[String],
    problems: &mut Vec<Problem>,
) -> Vec<Preopen> {
    let subject = format!("component `{}`", component.name);
    let mut preopens = Vec::new();
    for mount in &component.volume_mounts {
        if !mount.mount_path.starts_with('/') {
            problems.push(Problem::new(
                &subject,
                format!("mountPath `{}` of volume `{}` must be absolute", mount.mount_path, mount.name),
            ));
        }
        if !declared.contains(&mount.name) {
            let known = if declared.is_empty() {
                "none are declared".to_string()
            } else {
                format!("declared: {}", declared.join(", "))
            };
            problems.push(Problem::new(
                &subject,
                format!("mounts volume `{}`, which `volumes` does not declare ({known})", mount.name),
            ));
            continue;
        }
        // A declared volume that failed its own checks is already a problem.
        if let Some(v) = volumes.iter().find(|v| v.name == mount.name) {
            preopens.push(Preopen {
                host: v.path.clone(),
                guest: mount.mount_path.clone(),
                read_only: v.read_only || mount.read_only,
            });
        }
    }
    preopens
}

/// Creates the emptyDirs; on failure removes what it created.
pub(crate) fn create(volumes: &[Volume]) -> std::io::Result<()> {
    for v in volumes.iter().filter(|v| v.ephemeral) {
        if let Err(e) = std::fs::create_dir_all(&v.path) {
            remove(volumes);
            return Err(std::io::Error::new(e.kind(), format!("cannot create emptyDir {}: {e}", v.path.display())));
        }
    }
    Ok(())
}

/// Deletes the emptyDirs and the workload's scratch directory if it is left empty.
pub(crate) fn remove(volumes: &[Volume]) {
    for v in volumes.iter().filter(|v| v.ephemeral) {
        if let Err(e) = std::fs::remove_dir_all(&v.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %v.path.display(), "cannot delete emptyDir: {e}");
        }
        if let Some(parent) = v.path.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}
