//! mr-storage-initializer: put a model where a KServe model server can load it.
//!
//! The pipeline reads top to bottom, one module per stage:
//! parse (`cli`, `uri`) → look up (`registry`) → select (`select`, `resolve`) → check the
//! artifact URI (`policy`) → download (not yet: storage backends come in later issues).
//! `settings` reads the environment once; `http` is the one HTTP stack; `error` is the one
//! error type.
//!
//! Everything is `pub` so the integration tests can reach it; nothing depends on this crate.

pub mod cli;
pub mod error;
pub mod http;
pub mod policy;
pub mod registry;
pub mod resolve;
pub mod select;
pub mod settings;
pub mod uri;

use crate::cli::Pair;
use crate::error::Error;
use crate::resolve::Resolution;
use crate::settings::Settings;
use crate::uri::{RegistryUri, StorageKind, is_registry_uri};

/// Resolves a `model-registry://` URI and checks the artifact URI against the policy.
pub fn resolve_uri(uri: &str, settings: &Settings) -> Result<Resolution, Error> {
    let parsed = RegistryUri::parse(uri)?;
    log::info!("resolving {uri}");
    let agent = http::agent(&settings.tls, settings.registry.ca_file.as_slice())?;
    let resolution = resolve::resolve(&parsed, &settings.registry, &agent)?;
    policy::check(
        &resolution.artifact_uri,
        settings.allowed_artifact_prefixes.as_deref(),
    )?;
    Ok(resolution)
}

/// Processes each `SRC_URI DEST_DIR` pair in order; stops at the first failure.
pub fn run(pairs: &[Pair], settings: &Settings) -> Result<(), Error> {
    for pair in pairs {
        log::info!(
            "{} -> {}",
            error::redact_url(&pair.src),
            pair.dest.display()
        );
        let source = if is_registry_uri(&pair.src) {
            resolve_uri(&pair.src, settings)?.artifact_uri
        } else {
            pair.src.clone()
        };
        download(&source)?;
    }
    Ok(())
}

// The download stage. Storage backends are separate issues; until then a run says so rather
// than succeeding with nothing written.
fn download(uri: &str) -> Result<(), Error> {
    let shown = error::redact_url(uri);
    match StorageKind::of(uri) {
        Some(kind) => Err(Error::NotImplemented {
            uri: shown,
            scheme: kind.scheme().to_string(),
        }),
        None => Err(Error::Uri {
            uri: shown,
            reason: "unsupported storage scheme (supported: model-registry://, s3://, gs://, Azure Blob https://, http(s)://, file:// or a path)".into(),
        }),
    }
}
