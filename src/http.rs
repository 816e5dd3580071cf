//! The one way peon builds HTTP clients (plan fetching, the CLI): rustls with the ring provider,
//! installed once per process.

use std::sync::Once;

static PROVIDER: Once = Once::new();

/// Installs the TLS crypto provider (idempotent).
pub fn init_tls() {
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A reqwest client builder with TLS ready and a user agent naming peon.
pub fn client_builder() -> reqwest::ClientBuilder {
    init_tls();
    reqwest::Client::builder().user_agent(concat!("peon/", env!("CARGO_PKG_VERSION")))
}
