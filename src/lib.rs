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
use crate::download::{Options, Summary, Watch};
use crate::error::{Error, redact_url};
use crate::resolve::Resolution;
use crate::settings::Settings;
use crate::uri::{RegistryUri, StorageKind, is_registry_uri};

/// Sends `log` records to stderr as `level: message`, filtered by `RUST_LOG` (see
/// `log_filter`).
pub fn init_logging() {
    use std::io::Write;
    let rust_log = std::env::var("RUST_LOG").ok();
    env_logger::Builder::new()
        .parse_filters(&log_filter(rust_log.as_deref()))
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

/// The `env_logger` filter for a `RUST_LOG` value (default `info`). A bare level (`debug`) is
/// this program's level; other crates stay at `info` or quieter, since ureq and rustls write
/// dozens of lines per request at `debug`. `module=level` directives (`ureq=debug`) apply as
/// written, and win over the bare level.
pub fn log_filter(rust_log: Option<&str>) -> String {
    const CRATE: &str = env!("CARGO_CRATE_NAME");
    let spec = rust_log.map(str::trim).unwrap_or_default();
    // env_logger's `/text` suffix filters messages; it is kept as written.
    let (directives, text) = match spec.split_once('/') {
        Some((d, t)) => (d, Some(t)),
        None => (spec, None),
    };
    let mut level = log::LevelFilter::Info;
    let mut modules = Vec::new();
    for directive in directives
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        match directive.parse::<log::LevelFilter>() {
            Ok(bare) => level = bare,
            Err(_) => modules.push(directive),
        }
    }
    let others = level.min(log::LevelFilter::Info);
    let mut filter = format!("{others},{CRATE}={level}");
    for module in modules {
        filter.push(',');
        filter.push_str(module);
    }
    if let Some(text) = text {
        filter.push('/');
        filter.push_str(text);
    }
    filter
}

/// Resolves a `model-registry://` URI and checks the artifact URI against the policy.
pub fn resolve_uri(uri: &str, settings: &Settings) -> Result<Resolution, Error> {
    let parsed = RegistryUri::parse(uri)?;
    for key in uri::unknown_parameters(uri) {
        log::warn!("ignoring unknown query parameter '{key}' in model-registry:// URI");
    }
    log::info!("resolving {uri}");
    let agent = http::agent(
        &settings.tls,
        http::Trust::Usual(settings.registry.ca_file.as_slice()),
    )?;
    // The registry side does not know the storage schemes; the storage side says which it can fetch.
    let fetchable = |uri: &str| StorageKind::of(uri).is_some();
    let resolution = resolve::resolve(&parsed, &settings.registry, &agent, &fetchable)?;
    policy::check(
        &resolution.artifact_uri,
        settings.allowed_artifact_prefixes.as_deref(),
    )?;
    Ok(resolution)
}

/// Processes each `SRC_URI DEST_DIR` pair in order; stops at the first failure. `watch`
/// shows the user each download's plan, progress and summary.
pub fn run(
    pairs: &[Pair],
    options: &Options,
    settings: &Settings,
    watch: &dyn Watch,
) -> Result<(), Error> {
    for pair in pairs {
        // A model-registry:// URI holds no secret (its query is ?namespace=), and redacting it
        // would hide what the parser objects to.
        let shown = if is_registry_uri(&pair.src) {
            pair.src.clone()
        } else {
            redact_url(&pair.src)
        };
        log::info!("{shown} -> {}", pair.dest.display());
        let source = if is_registry_uri(&pair.src) {
            resolve_uri(&pair.src, settings)?.artifact_uri
        } else {
            pair.src.clone()
        };
        fetch(&source, &pair.dest, options, settings, watch)?;
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
    watch: &dyn Watch,
) -> Result<Summary, Error> {
    let opened = fetch::open(uri, settings)?;
    let shown = redact_url(uri);
    let summary = download::download(
        &*opened.source,
        &opened.prefix,
        &shown,
        dest,
        options,
        watch,
    )?;
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

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn a_bare_level_is_this_programs_and_modules_are_as_written() {
        let cases = [
            (None, "INFO,mr_storage_initializer=INFO"),
            (Some(" "), "INFO,mr_storage_initializer=INFO"),
            (Some("debug"), "INFO,mr_storage_initializer=DEBUG"),
            (Some("warn"), "WARN,mr_storage_initializer=WARN"),
            (
                Some("ureq=debug"),
                "INFO,mr_storage_initializer=INFO,ureq=debug",
            ),
            (
                Some("debug, ureq=debug"),
                "INFO,mr_storage_initializer=DEBUG,ureq=debug",
            ),
            (
                Some("trace,mr_storage_initializer=warn"),
                "INFO,mr_storage_initializer=TRACE,mr_storage_initializer=warn",
            ),
            (Some("debug/GET"), "INFO,mr_storage_initializer=DEBUG/GET"),
        ];
        for (rust_log, filter) in cases {
            assert_eq!(log_filter(rust_log), filter, "{rust_log:?}");
        }
    }
}
