//! Trust added to every TLS connection: `SSL_CERT_FILE` and KServe's CA bundle (the registry's
//! own `MODEL_REGISTRY_CA_FILE` is trusted for it alone, so `RegistrySettings` holds that).

use std::path::PathBuf;

use super::NetSettings;

// KServe's default mount point for its CA bundle configmap.
const DEFAULT_CA_BUNDLE_MOUNT: &str = "/etc/ssl/custom-certs";

/// Trust added to every TLS connection, and the limits every connection shares (`net`): what
/// `http::agent` needs to build any agent.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// `SSL_CERT_FILE`: a PEM bundle added to the built-in and system roots (OpenSSL would
    /// replace them with it).
    pub(crate) ssl_cert_file: Option<PathBuf>,
    /// KServe's CA bundle: `$CA_BUNDLE_VOLUME_MOUNT_POINT/cabundle.crt` when
    /// `CA_BUNDLE_CONFIGMAP_NAME` is set.
    pub(crate) kserve_ca_bundle: Option<PathBuf>,
    /// The low-speed limit, the registry's deadline and the refused address ranges.
    pub(crate) net: NetSettings,
}

pub(super) fn read(get: &dyn Fn(&str) -> Option<String>, net: NetSettings) -> TlsSettings {
    let kserve_ca_bundle = get("CA_BUNDLE_CONFIGMAP_NAME").map(|_| {
        let dir =
            get("CA_BUNDLE_VOLUME_MOUNT_POINT").unwrap_or_else(|| DEFAULT_CA_BUNDLE_MOUNT.into());
        PathBuf::from(dir).join("cabundle.crt")
    });
    TlsSettings {
        ssl_cert_file: get("SSL_CERT_FILE").map(PathBuf::from),
        kserve_ca_bundle,
        net,
    }
}
