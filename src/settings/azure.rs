//! The Azure Blob variables, under the names KServe and Azure's own tools read.

use std::path::PathBuf;

use super::Secret;
use crate::error::Error;

/// Azure Blob settings, under the names KServe and Azure's own tools read (`AZ_*` are KServe's
/// legacy names, read when the `AZURE_*` one is unset).
#[derive(Debug, Clone, Default)]
pub(crate) struct AzureSettings {
    /// `AZURE_STORAGE_ACCESS_KEY`: the account key, for Shared Key signing.
    pub(crate) account_key: Option<Secret>,
    /// `AZURE_CLIENT_ID`.
    pub(crate) client_id: Option<String>,
    /// `AZURE_TENANT_ID`.
    pub(crate) tenant_id: Option<String>,
    /// `AZURE_CLIENT_SECRET`.
    pub(crate) client_secret: Option<Secret>,
    /// `AZURE_FEDERATED_TOKEN_FILE`: workload identity's projected token.
    pub(crate) federated_token_file: Option<PathBuf>,
    /// `AZURE_AUTHORITY_HOST` (default `https://login.microsoftonline.com`).
    pub(crate) authority_host: Option<String>,
    /// `AZURE_STORAGE_BLOB_ENDPOINT`: replaces `https://ACCOUNT.blob.core.windows.net`.
    pub(crate) blob_endpoint: Option<String>,
    /// `AZURE_STORAGE_CONNECTION_STRING`, held whole: it may carry a key or a SAS.
    pub(crate) connection_string: Option<Secret>,
}

pub(super) fn read(get: &dyn Fn(&str) -> Option<String>) -> Result<AzureSettings, Error> {
    let blob_endpoint = match get("AZURE_STORAGE_BLOB_ENDPOINT") {
        // A SAS belongs in the URI or the connection string: on the endpoint it would end
        // up before the container's path.
        Some(e) if e.contains(['?', '#']) => {
            let reason = "it has a query (not shown); give scheme://host[:port][/account] and put a SAS token in the URI";
            return Err(Error::env("AZURE_STORAGE_BLOB_ENDPOINT", reason));
        }
        e => e.map(|e| e.trim().trim_end_matches('/').to_string()),
    };
    Ok(AzureSettings {
        account_key: get("AZURE_STORAGE_ACCESS_KEY").map(|k| Secret::new(k.trim())),
        client_id: get("AZURE_CLIENT_ID").or_else(|| get("AZ_CLIENT_ID")),
        tenant_id: get("AZURE_TENANT_ID").or_else(|| get("AZ_TENANT_ID")),
        client_secret: get("AZURE_CLIENT_SECRET")
            .or_else(|| get("AZ_CLIENT_SECRET"))
            .map(Secret::new),
        federated_token_file: get("AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from),
        authority_host: get("AZURE_AUTHORITY_HOST")
            .map(|h| h.trim().trim_end_matches('/').to_string()),
        blob_endpoint,
        connection_string: get("AZURE_STORAGE_CONNECTION_STRING").map(Secret::new),
    })
}
