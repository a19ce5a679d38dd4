//! Wasm components as OCI artifacts, in the CNCF layout: a manifest whose
//! config has the media type `application/vnd.wasm.config.v0+json` and whose one
//! layer (`application/wasm`) is the component. A client of the OCI distribution
//! API of its own, on hyper and rustls (what weft already links), with
//! anonymous, basic and bearer-token authentication, retries with backoff and a
//! cache by digest on disk.

mod auth;
mod cache;
mod metadata;
pub mod reference;
mod settings;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use serde::Deserialize;

use self::auth::{Challenge, Credential};
use self::cache::OciCache;
pub use self::cache::sha256_digest;
pub use self::reference::Reference;
pub use self::settings::{OciSettings, RegistrySettings};

pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
pub const WASM_LAYER: &str = "application/wasm";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// What a manifest request accepts: the Wasm layout, and the kinds weft names
/// in its refusal (an image index, a Docker image).
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";
/// The distribution spec's bound on manifests registries must accept.
const MAX_MANIFEST: u64 = 4 << 20;
/// Error bodies and token answers are read this far.
const MAX_SMALL_BODY: u64 = 64 << 10;
/// Tries of an exchange that failed in transport or with 429 or 5xx, and the
/// first pause between them (doubling).
const ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_REDIRECTS: u32 = 5;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OciError {
    #[error("oci://{reference}: not found in the registry")]
    NotFound { reference: String },
    #[error("oci://{reference}: unauthorized: {detail}")]
    Unauthorized { reference: String, detail: String },
    #[error("oci://{reference}: not a Wasm artifact: {detail}")]
    NotWasm { reference: String, detail: String },
    #[error("oci://{reference}: registry `{registry}` is unreachable: {detail}")]
    Unreachable { reference: String, registry: String, detail: String },
    #[error("oci://{reference}: {detail}")]
    Failed { reference: String, detail: String },
}

/// A pulled component.
#[derive(Debug)]
pub struct Pulled {
    pub bytes: Vec<u8>,
    pub manifest_digest: String,
    pub layer_digest: String,
    /// Nothing was fetched: manifest and layer came from the disk cache.
    pub from_cache: bool,
}

/// Requests made to registries so far (tests read these to see what a start fetched).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OciStats {
    pub manifests: u64,
    pub blobs: u64,
}

/// Whether a tag already resolved is looked up again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// The tag's manifest digest from the cache, when there is one (starting workloads).
    IfNotPresent,
    /// Resolve the tag at the registry (`weft oci pull`).
    Always,
}

/// Told of a transfer's progress: what, bytes so far, bytes in all.
pub type Progress = Arc<dyn Fn(&str, u64, u64) + Send + Sync>;

pub struct OciClient {
    settings: OciSettings,
    cache: Option<OciCache>,
    max_blob: u64,
    /// `Authorization` values that worked, by registry and scope.
    authorizations: Mutex<HashMap<(String, String), String>>,
    manifests: AtomicU64,
    blobs: AtomicU64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    media_type: Option<String>,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    digest: String,
    size: u64,
}

impl OciClient {
    /// `cache_dir`: where pulled artifacts are kept (none: nothing is kept).
    /// `max_blob`: the largest component pulled.
    pub fn new(settings: OciSettings, cache_dir: Option<PathBuf>, max_blob: u64) -> OciClient {
        OciClient {
            settings,
            cache: cache_dir.map(OciCache::new),
            max_blob,
            authorizations: Mutex::default(),
            manifests: AtomicU64::new(0),
            blobs: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> OciStats {
        OciStats { manifests: self.manifests.load(Ordering::Relaxed), blobs: self.blobs.load(Ordering::Relaxed) }
    }

    /// Pulls the component `reference` names, verified against its digests.
    pub async fn pull(
        &self,
        reference: &Reference,
        policy: PullPolicy,
        progress: Option<&Progress>,
    ) -> Result<Pulled, OciError> {
        let known = match (&reference.digest, policy) {
            (Some(digest), _) => Some(digest.clone()),
            (None, PullPolicy::IfNotPresent) => {
                let reference = reference.clone();
                self.cached(move |c| c.tag(&reference)).await
            }
            (None, PullPolicy::Always) => None,
        };
        if let Some(manifest_digest) = known
            && let Some(pulled) = self.pull_cached(reference, manifest_digest).await
        {
            return Ok(pulled);
        }
        let (manifest, manifest_digest) = self.fetch_manifest(reference).await?;
        let layer = wasm_layer(reference, &manifest)?;
        if layer.size > self.max_blob {
            return Err(failed(
                reference,
                format!("the component is {} bytes, over the limit of {}", layer.size, self.max_blob),
            ));
        }
        let digest = layer.digest.clone();
        let (bytes, fetched) = match self.cached(move |c| c.blob(&digest)).await {
            Some(bytes) => (Bytes::from(bytes), false),
            None => (Bytes::from(self.fetch_blob(reference, &layer, progress).await?), true),
        };
        let (md, ld, reference_owned, blob) =
            (manifest_digest.clone(), layer.digest.clone(), reference.clone(), bytes.clone());
        let stored = self
            .cached_io(move |c| {
                if fetched {
                    c.put_blob(&ld, &blob)?;
                }
                c.put_manifest(&md, &manifest)?;
                c.put_tag(&reference_owned, &md)
            })
            .await;
        if let Err(e) = stored {
            tracing::warn!(reference = %reference, "cannot cache the pulled component: {e}");
        }
        // The cache's copy is dropped: no second copy is made here.
        Ok(Pulled { bytes: Vec::from(bytes), manifest_digest, layer_digest: layer.digest, from_cache: false })
    }

    /// A blob from the cache, when it is there with its digest's bytes.
    pub async fn cached_blob(&self, digest: &str) -> Option<Vec<u8>> {
        reference::check_digest(digest).ok()?;
        let digest = digest.to_string();
        self.cached(move |c| c.blob(&digest)).await
    }

    /// Keeps a blob (already checked against `digest`) in the cache; gives it back.
    pub async fn cache_blob(&self, digest: &str, bytes: Vec<u8>) -> Vec<u8> {
        let (digest, bytes) = (digest.to_string(), Bytes::from(bytes));
        let blob = bytes.clone();
        if let Err(e) = self.cached_io(move |c| c.put_blob(&digest, &blob)).await {
            tracing::warn!("cannot cache a fetched component: {e}");
        }
        Vec::from(bytes)
    }

    /// The artifact from the cache alone, when manifest and layer are there.
    async fn pull_cached(&self, reference: &Reference, manifest_digest: String) -> Option<Pulled> {
        let reference = reference.clone();
        let cache = self.cache.clone()?;
        tokio::task::spawn_blocking(move || {
            let manifest = cache.manifest(&manifest_digest)?;
            let layer = wasm_layer(&reference, &manifest).ok()?;
            let bytes = cache.blob(&layer.digest)?;
            Some(Pulled { bytes, manifest_digest, layer_digest: layer.digest, from_cache: true })
        })
        .await
        .ok()
        .flatten()
    }

    /// Runs a cache lookup off the async threads (it reads and hashes files).
    async fn cached<T: Send + 'static>(&self, f: impl FnOnce(&OciCache) -> Option<T> + Send + 'static) -> Option<T> {
        let cache = self.cache.clone()?;
        tokio::task::spawn_blocking(move || f(&cache)).await.ok().flatten()
    }

    /// Writes to the cache off the async threads.
    async fn cached_io(
        &self,
        f: impl FnOnce(&OciCache) -> std::io::Result<()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Some(cache) = self.cache.clone() else { return Ok(()) };
        tokio::task::spawn_blocking(move || f(&cache)).await.map_err(|e| std::io::Error::other(e.to_string()))?
    }

    async fn fetch_manifest(&self, reference: &Reference) -> Result<(Vec<u8>, String), OciError> {
        self.manifests.fetch_add(1, Ordering::Relaxed);
        let url = self.url(reference, &format!("/v2/{}/manifests/{}", reference.repository, reference.target()));
        let headers = [(header::ACCEPT, MANIFEST_ACCEPT.to_string())];
        let response = self.exchange(reference, false, Method::GET, url, &headers, Bytes::new()).await?;
        let response = expect(reference, response, StatusCode::OK).await?;
        let body = crate::transport::read_body(response.into_body(), MAX_MANIFEST, |_| {})
            .await
            .map_err(|e| failed(reference, format!("the manifest: {e}")))?;
        let digest = sha256_digest(&body);
        if let Some(pinned) = &reference.digest
            && pinned != &digest
        {
            return Err(failed(reference, format!("the registry sent a manifest whose digest is {digest}")));
        }
        Ok((body, digest))
    }

    async fn fetch_blob(
        &self,
        reference: &Reference,
        layer: &Descriptor,
        progress: Option<&Progress>,
    ) -> Result<Vec<u8>, OciError> {
        self.blobs.fetch_add(1, Ordering::Relaxed);
        let url = self.url(reference, &format!("/v2/{}/blobs/{}", reference.repository, layer.digest));
        let response = self.exchange(reference, false, Method::GET, url, &[], Bytes::new()).await?;
        let response = expect(reference, response, StatusCode::OK).await?;
        let label = reference.to_string();
        let report = |done| {
            if let Some(progress) = progress {
                progress(&label, done, layer.size);
            }
        };
        report(0);
        let bytes = crate::transport::read_body(response.into_body(), layer.size, report)
            .await
            .map_err(|e| failed(reference, format!("the layer {}: {e}", layer.digest)))?;
        let digest = sha256_digest(&bytes);
        if digest != layer.digest || bytes.len() as u64 != layer.size {
            return Err(failed(
                reference,
                format!(
                    "the layer is {} bytes with digest {digest}; the manifest says {} bytes, {}",
                    bytes.len(),
                    layer.size,
                    layer.digest
                ),
            ));
        }
        Ok(bytes)
    }

    /// Pushes `wasm` as a Wasm artifact; answers the manifest's digest.
    pub async fn push(
        &self,
        reference: &Reference,
        wasm: Vec<u8>,
        extra_annotations: BTreeMap<String, String>,
    ) -> Result<String, OciError> {
        let meta = metadata::read(&wasm).map_err(|e| failed(reference, e))?;
        let layer_digest = sha256_digest(&wasm);
        let created = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let config = serde_json::json!({
            "created": created,
            "architecture": "wasm",
            "os": "wasip2",
            "layerDigests": [layer_digest],
            "component": { "imports": meta.imports, "exports": meta.exports },
        });
        let config = Bytes::from(serde_json::to_vec(&config).expect("JSON values serialize"));
        let layer = Bytes::from(wasm);
        let descriptor = |media_type: &str, bytes: &Bytes| serde_json::json!({ "mediaType": media_type, "digest": sha256_digest(bytes), "size": bytes.len() });
        let mut annotations = meta.annotations;
        annotations.insert("org.opencontainers.image.created".into(), created);
        annotations.extend(extra_annotations);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(WASM_CONFIG, &config),
            "layers": [descriptor(WASM_LAYER, &layer)],
            "annotations": annotations,
        });
        self.upload_blob(reference, config).await?;
        self.upload_blob(reference, layer).await?;
        let manifest = Bytes::from(serde_json::to_vec(&manifest).expect("JSON values serialize"));
        let digest = sha256_digest(&manifest);
        let url = self.url(reference, &format!("/v2/{}/manifests/{}", reference.repository, reference.target()));
        let headers = [(header::CONTENT_TYPE, OCI_MANIFEST.to_string())];
        let response = self.exchange(reference, true, Method::PUT, url, &headers, manifest).await?;
        expect(reference, response, StatusCode::CREATED).await?;
        Ok(digest)
    }

    /// Uploads a blob in one request, unless the repository has it.
    async fn upload_blob(&self, reference: &Reference, blob: Bytes) -> Result<(), OciError> {
        let digest = sha256_digest(&blob);
        let repository = &reference.repository;
        let url = self.url(reference, &format!("/v2/{repository}/blobs/{digest}"));
        let response = self.exchange(reference, true, Method::HEAD, url, &[], Bytes::new()).await?;
        if response.status() == StatusCode::OK {
            return Ok(());
        }
        let url = self.url(reference, &format!("/v2/{repository}/blobs/uploads/"));
        let response = self.exchange(reference, true, Method::POST, url, &[], Bytes::new()).await?;
        let response = expect(reference, response, StatusCode::ACCEPTED).await?;
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .ok_or_else(|| failed(reference, "the registry started an upload without a `Location`"))?;
        let location = self.resolve(reference, location);
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{separator}digest={}", auth::form_escape(&digest));
        let headers = [(header::CONTENT_TYPE, "application/octet-stream".to_string())];
        let response = self.exchange(reference, true, Method::PUT, url, &headers, blob).await?;
        expect(reference, response, StatusCode::CREATED).await?;
        Ok(())
    }

    fn scheme(&self, reference: &Reference) -> &'static str {
        if self.settings.insecure(&reference.registry) { "http" } else { "https" }
    }

    fn url(&self, reference: &Reference, path: &str) -> String {
        format!("{}://{}{path}", self.scheme(reference), reference.api_host())
    }

    /// A `Location` made absolute.
    fn resolve(&self, reference: &Reference, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            self.url(reference, &format!("/{}", location.trim_start_matches('/')))
        }
    }

    /// One request to the registry: authenticated (answering one challenge),
    /// redirects followed, retried on transport failures, 429 and 5xx.
    async fn exchange(
        &self,
        reference: &Reference,
        push: bool,
        method: Method,
        mut url: String,
        headers: &[(header::HeaderName, String)],
        body: Bytes,
    ) -> Result<http::Response<Incoming>, OciError> {
        let scope = format!("repository:{}:{}", reference.repository, if push { "pull,push" } else { "pull" });
        let key = (reference.registry.clone(), scope.clone());
        let registry_origin = format!("{}://{}", self.scheme(reference), reference.api_host());
        let (mut challenged, mut redirects) = (false, 0);
        loop {
            // Credentials go to the registry only, not to where it redirects.
            let to_registry = url.starts_with(&format!("{registry_origin}/"));
            let authorization = if to_registry { self.authorizations.lock().unwrap().get(&key).cloned() } else { None };
            let response = self
                .send(reference, || {
                    let mut request = http::Request::builder().method(method.clone()).uri(url.as_str());
                    for (name, value) in headers {
                        request = request.header(name, value);
                    }
                    if let Some(authorization) = &authorization {
                        request = request.header(header::AUTHORIZATION, authorization);
                    }
                    request.body(Full::new(body.clone()))
                })
                .await?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && to_registry && !challenged {
                challenged = true;
                let challenge = response
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|h| h.to_str().ok())
                    .and_then(Challenge::parse);
                let authorization = self.answer(reference, &scope, challenge).await?;
                self.authorizations.lock().unwrap().insert(key.clone(), authorization);
                continue;
            }
            if status.is_redirection()
                && let Some(location) = response.headers().get(header::LOCATION).and_then(|l| l.to_str().ok())
            {
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return Err(failed(reference, format!("more than {MAX_REDIRECTS} redirects")));
                }
                url = self.resolve(reference, location);
                continue;
            }
            return Ok(response);
        }
    }

    /// Sends a request, trying again with backoff while the registry cannot be
    /// reached or answers 429 or 5xx.
    async fn send(
        &self,
        reference: &Reference,
        request: impl Fn() -> http::Result<http::Request<Full<Bytes>>>,
    ) -> Result<http::Response<Incoming>, OciError> {
        let (mut attempt, mut pause) = (1, FIRST_BACKOFF);
        loop {
            let request = request().map_err(|e| failed(reference, format!("a request could not be made: {e}")))?;
            let cause = match crate::transport::send(request).await {
                Ok(response)
                    if response.status() == StatusCode::TOO_MANY_REQUESTS || response.status().is_server_error() =>
                {
                    format!("it answered {}", response.status())
                }
                Ok(response) => return Ok(response),
                Err(e) => e.0,
            };
            if attempt == ATTEMPTS {
                return Err(OciError::Unreachable {
                    reference: reference.to_string(),
                    registry: reference.registry.clone(),
                    detail: format!("{cause} ({ATTEMPTS} tries)"),
                });
            }
            tracing::debug!(reference = %reference, attempt, "registry request failed: {cause}; retrying in {pause:?}");
            tokio::time::sleep(pause).await;
            (attempt, pause) = (attempt + 1, pause * 2);
        }
    }

    /// The `Authorization` that answers a registry's challenge.
    async fn answer(
        &self,
        reference: &Reference,
        scope: &str,
        challenge: Option<Challenge>,
    ) -> Result<String, OciError> {
        let unauthorized = |detail: String| OciError::Unauthorized { reference: reference.to_string(), detail };
        let credential = auth::lookup(&self.settings, &reference.registry).map_err(unauthorized)?;
        let registry = &reference.registry;
        if let Some(Credential::Token(token)) = &credential {
            return Ok(format!("Bearer {token}"));
        }
        // Anything but a bearer challenge is answered with the credentials themselves.
        let challenge = match challenge {
            Some(challenge) if challenge.scheme == "bearer" => challenge,
            _ => {
                return match &credential {
                    Some(Credential::Basic { username, password }) => Ok(Credential::basic_header(username, password)),
                    Some(_) => Err(unauthorized(format!(
                        "the registry asks for basic credentials; the Docker configuration has only an identity token for `{registry}`"
                    ))),
                    None => Err(unauthorized(format!(
                        "the registry wants credentials, and none are configured for `{registry}` \
                         (host configuration `oci.registries`, or ~/.docker/config.json)"
                    ))),
                };
            }
        };
        let realm = challenge
            .params
            .get("realm")
            .ok_or_else(|| unauthorized("the registry's bearer challenge names no realm".into()))?;
        let plain_allowed = realm.starts_with("http://") && self.settings.insecure(registry);
        if !(realm.starts_with("https://") || plain_allowed) {
            return Err(unauthorized(format!("the token service `{realm}` is not HTTPS")));
        }
        let mut query = format!("scope={}", auth::form_escape(scope));
        if let Some(service) = challenge.params.get("service") {
            query = format!("service={}&{query}", auth::form_escape(service));
        }
        let response = match &credential {
            Some(Credential::Identity(refresh)) => {
                let form = format!(
                    "grant_type=refresh_token&client_id=weft&refresh_token={}&{query}",
                    auth::form_escape(refresh)
                );
                self.send(reference, || {
                    http::Request::post(realm.as_str())
                        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                        .body(Full::new(Bytes::from(form.clone())))
                })
                .await?
            }
            basic => {
                let separator = if realm.contains('?') { '&' } else { '?' };
                let url = format!("{realm}{separator}{query}");
                self.send(reference, || {
                    let mut request = http::Request::get(url.as_str());
                    if let Some(Credential::Basic { username, password }) = basic {
                        request = request.header(header::AUTHORIZATION, Credential::basic_header(username, password));
                    }
                    request.body(Full::new(Bytes::new()))
                })
                .await?
            }
        };
        let status = response.status();
        let body = crate::transport::read_body(response.into_body(), MAX_SMALL_BODY, |_| {})
            .await
            .map_err(|e| unauthorized(format!("the token service's answer: {e}")))?;
        if !status.is_success() {
            let who = if credential.is_some() { "the configured credentials" } else { "anonymous access" };
            return Err(unauthorized(format!("the token service refused {who} ({status})")));
        }
        let token = auth::token_from_answer(&body).map_err(unauthorized)?;
        Ok(format!("Bearer {token}"))
    }
}

fn failed(reference: &Reference, detail: impl Into<String>) -> OciError {
    OciError::Failed { reference: reference.to_string(), detail: detail.into() }
}

/// The response when it has the `expected` status; else the error it means,
/// with the registry's own message.
async fn expect(
    reference: &Reference,
    response: http::Response<Incoming>,
    expected: StatusCode,
) -> Result<http::Response<Incoming>, OciError> {
    let status = response.status();
    if status == expected {
        return Ok(response);
    }
    let body = crate::transport::read_body(response.into_body(), MAX_SMALL_BODY, |_| {}).await.unwrap_or_default();
    let message = registry_message(&body).unwrap_or_else(|| status.to_string());
    let reference_text = reference.to_string();
    Err(match status {
        StatusCode::NOT_FOUND => OciError::NotFound { reference: reference_text },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => OciError::Unauthorized {
            reference: reference_text,
            detail: format!("the registry refused access: {message}"),
        },
        _ => failed(reference, format!("the registry answered {status}: {message}")),
    })
}

/// The messages of the distribution spec's error body, `{"errors": [{code, message}]}`.
fn registry_message(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(Deserialize)]
    struct ErrorEntry {
        code: Option<String>,
        message: Option<String>,
    }
    let errors: Errors = serde_json::from_slice(body).ok()?;
    let text: Vec<String> = errors
        .errors
        .into_iter()
        .map(|e| match (e.code, e.message) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (code, message) => code.or(message).unwrap_or_default(),
        })
        .collect();
    (!text.is_empty()).then(|| text.join("; "))
}

/// The one `application/wasm` layer of a Wasm artifact's manifest.
fn wasm_layer(reference: &Reference, manifest: &[u8]) -> Result<Descriptor, OciError> {
    let not_wasm = |detail: String| OciError::NotWasm { reference: reference.to_string(), detail };
    let manifest: Manifest =
        serde_json::from_slice(manifest).map_err(|e| not_wasm(format!("the manifest cannot be read: {e}")))?;
    let kind = manifest.media_type.as_deref().unwrap_or_default();
    if kind.contains("index") || kind.contains("manifest.list") {
        return Err(not_wasm(format!("it is an image index ({kind}), not one artifact")));
    }
    let config = manifest.config.ok_or_else(|| not_wasm("the manifest has no config".into()))?;
    if config.media_type != WASM_CONFIG {
        return Err(not_wasm(format!("its config is `{}`, not `{WASM_CONFIG}`", config.media_type)));
    }
    let mut layers = manifest.layers.iter().filter(|l| l.media_type == WASM_LAYER);
    let layer = layers.next().ok_or_else(|| not_wasm(format!("it has no `{WASM_LAYER}` layer")))?;
    if layers.next().is_some() {
        return Err(not_wasm(format!("it has more than one `{WASM_LAYER}` layer")));
    }
    reference::check_digest(&layer.digest).map_err(not_wasm)?;
    Ok(layer.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> Reference {
        Reference::parse("r.io/app:1").unwrap()
    }

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn only_the_wasm_layout_is_a_component() {
        let manifest = |config: &str, layers: &str| {
            format!(
                r#"{{"schemaVersion":2,"config":{{"mediaType":"{config}","digest":"{D}","size":2}},"layers":[{layers}]}}"#
            )
        };
        let layer = |kind: &str| format!(r#"{{"mediaType":"{kind}","digest":"{D}","size":9}}"#);
        let ok = manifest(WASM_CONFIG, &layer(WASM_LAYER));
        assert_eq!(wasm_layer(&reference(), ok.as_bytes()).unwrap().size, 9);
        for (bytes, why) in [
            (manifest("application/vnd.oci.image.config.v1+json", &layer(WASM_LAYER)), "its config is"),
            (
                manifest(WASM_CONFIG, &layer("application/vnd.oci.image.layer.v1.tar+gzip")),
                "no `application/wasm` layer",
            ),
            (manifest(WASM_CONFIG, &format!("{},{}", layer(WASM_LAYER), layer(WASM_LAYER))), "more than one"),
            (
                r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#.into(),
                "image index",
            ),
            ("not json".into(), "cannot be read"),
        ] {
            let e = wasm_layer(&reference(), bytes.as_bytes()).unwrap_err();
            assert!(matches!(&e, OciError::NotWasm { .. }) && e.to_string().contains(why), "{e}");
        }
    }

    #[test]
    fn registry_error_bodies() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
        assert_eq!(registry_message(body).as_deref(), Some("MANIFEST_UNKNOWN: manifest unknown"));
        assert_eq!(registry_message(b"<html>"), None);
    }
}
