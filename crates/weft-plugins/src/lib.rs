//! weft's built-in host plugins. Each capability is a module; each backend of a
//! capability is a file of its own. [`Settings`] is the `plugins` section of a host
//! configuration file; [`load`] turns it into the plugins a host registers.

pub mod blobstore;
pub mod budget;
pub mod config;
mod filenames;
pub mod http;
pub mod keyvalue;
pub mod logging;
pub mod messaging;
pub mod nats_client;
pub mod otel;
pub mod scope;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weft_runtime::plugin::HostPlugin;

/// The plugins' settings, as in a host configuration file:
///
/// ```yaml
/// plugins:
///   config: { defaults: { region: eu-west } }
///   keyvalue: { backend: filesystem, path: /var/lib/weft/kv }
/// ```
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub config: config::Settings,
    #[serde(default)]
    pub keyvalue: keyvalue::Settings,
    #[serde(default)]
    pub http: http::Settings,
    #[serde(default)]
    pub blobstore: blobstore::Settings,
    #[serde(default)]
    pub messaging: messaging::Settings,
}

/// Every built-in plugin, set up from `settings`.
pub async fn load(settings: &Settings) -> anyhow::Result<Vec<Arc<dyn HostPlugin>>> {
    Ok(vec![
        Arc::new(config::ConfigPlugin::new(&settings.config)),
        Arc::new(logging::LoggingPlugin),
        Arc::new(keyvalue::KeyValuePlugin::new(&settings.keyvalue).await?),
        Arc::new(http::HttpPlugin::new(&settings.http)),
        Arc::new(blobstore::BlobstorePlugin::new(&settings.blobstore).await?),
        Arc::new(messaging::MessagingPlugin::new(&settings.messaging).await?),
        Arc::new(otel::OtelPlugin::new()),
    ])
}
