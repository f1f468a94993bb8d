//! mr-storage-initializer: put a model where a KServe model server can load it.
//!
//! The pipeline reads top to bottom, one module per stage:
//! parse (`cli`, `uri`) → look up (`registry`) → select (`select`, `resolve`) → check the
//! artifact URI (`policy`) → list and read the source (`fetch`) → plan the files (`plan`) →
//! transfer them (`download`, writing through `dest`, reporting through `progress`) →
//! extract a lone archive (`archive`).
//! `settings` reads the environment once; `http` is the one HTTP stack; `error` is the one
//! error type.
//!
//! Everything is `pub` so the integration tests can reach it; nothing depends on this crate.

pub mod archive;
pub mod cli;
pub mod dest;
pub mod download;
pub mod error;
pub mod fetch;
pub mod http;
pub mod plan;
pub mod policy;
pub mod progress;
pub mod registry;
pub mod resolve;
pub mod select;
pub mod settings;
pub mod uri;

use std::path::Path;

use crate::cli::Pair;
use crate::download::{Options, Summary};
use crate::error::{Error, redact_url};
use crate::resolve::Resolution;
use crate::settings::Settings;
use crate::uri::{RegistryUri, is_registry_uri};

/// Sends `log` records to stderr as `level: message`, at `RUST_LOG` (default `info`).
pub fn init_logging() {
    use std::io::Write;
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        // Trace records do not exist: the `log` crate is built with `max_level_debug`.
        .format(|buf, record| {
            writeln!(
                buf,
                "{}: {}",
                record.level().as_str().to_ascii_lowercase(),
                record.args()
            )
        })
        .init();
}

/// Resolves a `model-registry://` URI and checks the artifact URI against the policy.
pub fn resolve_uri(uri: &str, settings: &Settings) -> Result<Resolution, Error> {
    let parsed = RegistryUri::parse(uri)?;
    log::info!("resolving {uri}");
    let agent = http::agent(
        &settings.tls,
        http::Trust::Usual(settings.registry.ca_file.as_slice()),
    )?;
    let resolution = resolve::resolve(&parsed, &settings.registry, &agent)?;
    policy::check(
        &resolution.artifact_uri,
        settings.allowed_artifact_prefixes.as_deref(),
    )?;
    Ok(resolution)
}

/// Processes each `SRC_URI DEST_DIR` pair in order; stops at the first failure.
pub fn run(pairs: &[Pair], options: &Options, settings: &Settings) -> Result<(), Error> {
    for pair in pairs {
        log::info!("{} -> {}", redact_url(&pair.src), pair.dest.display());
        let source = if is_registry_uri(&pair.src) {
            resolve_uri(&pair.src, settings)?.artifact_uri
        } else {
            pair.src.clone()
        };
        fetch(&source, &pair.dest, options, settings)?;
    }
    Ok(())
}

/// Downloads everything a storage URI names into `dest`, and extracts it when it is a lone
/// archive.
pub fn fetch(
    uri: &str,
    dest: &Path,
    options: &Options,
    settings: &Settings,
) -> Result<Summary, Error> {
    let opened = fetch::open(uri, settings)?;
    let shown = redact_url(uri);
    let summary = download::download(&*opened.source, &opened.prefix, &shown, dest, options)?;
    if let [only] = summary.paths.as_slice()
        && let Some(kind) = archive::Kind::of(only)
    {
        let path = dest.join(only);
        if options.dry_run {
            log::info!("dry run: {} would be extracted and removed", path.display());
        } else {
            let files = archive::extract(&path, kind, dest)?;
            log::info!(
                "extracted {files} file(s) from {} and removed it",
                path.display()
            );
        }
    }
    Ok(summary)
}
