//! The Google Cloud Storage variables, under the names Google's own libraries read.

use std::path::PathBuf;

use super::endpoint_url;
use crate::error::Error;

/// GCS settings, under the names Google's own libraries read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GcsSettings {
    /// `GOOGLE_APPLICATION_CREDENTIALS`: a service-account (or authorized-user) JSON file.
    pub(crate) credentials_file: Option<PathBuf>,
    /// `GCE_METADATA_HOST`: the metadata server's `host[:port]` (default
    /// `metadata.google.internal`).
    pub(crate) metadata_host: Option<String>,
    /// `STORAGE_EMULATOR_HOST` as `http(s)://host:port`: an emulator, reached without auth.
    pub(crate) emulator: Option<String>,
    /// `CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE` as `scheme://host[:port]`: another endpoint
    /// for the JSON API (Private Service Connect, a proxy), reached with auth.
    pub(crate) endpoint: Option<String>,
}

pub(super) fn read(get: &dyn Fn(&str) -> Option<String>) -> Result<GcsSettings, Error> {
    let emulator = get("STORAGE_EMULATOR_HOST")
        .map(|h| endpoint_url("STORAGE_EMULATOR_HOST", &h, "http"))
        .transpose()?;
    let endpoint = get("CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE")
        .map(|url| {
            // gcloud's form names the API path too: `https://host/storage/v1/`.
            let url = url.trim().trim_end_matches('/');
            let url = url.strip_suffix("/storage/v1").unwrap_or(url);
            endpoint_url("CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE", url, "https")
        })
        .transpose()?;
    Ok(GcsSettings {
        credentials_file: get("GOOGLE_APPLICATION_CREDENTIALS").map(PathBuf::from),
        metadata_host: get("GCE_METADATA_HOST").map(|h| h.trim().to_string()),
        emulator,
        endpoint,
    })
}
