//! The TLS client configuration weft's own connections use (guests' outgoing
//! HTTP, OCI registries, OTLP collectors): ring, the Mozilla roots of `webpki-roots`.

use std::sync::{Arc, OnceLock};

/// `None` only if ring supports none of rustls's safe protocol versions.
pub fn client_config() -> Option<Arc<rustls::ClientConfig>> {
    static CONFIG: OnceLock<Option<Arc<rustls::ClientConfig>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.into() };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let builder = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions();
            builder.ok().map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
        })
        .clone()
}

/// [`client_config`] offering only HTTP/2 by ALPN (gRPC).
pub fn client_config_h2() -> Option<Arc<rustls::ClientConfig>> {
    static CONFIG: OnceLock<Option<Arc<rustls::ClientConfig>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut config = (*client_config()?).clone();
            config.alpn_protocols = vec![b"h2".to_vec()];
            Some(Arc::new(config))
        })
        .clone()
}
