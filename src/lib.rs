//! mr-storage-initializer: put a model where a KServe model server can load it.
//!
//! The pipeline reads top to bottom, one folder per side:
//! the face (`face`: command line, logs, progress) → the registry side (`registry`: the
//! `model-registry://` grammar in `uri`, the REST client, newest-version selection) → the
//! artifact URI policy (`policy`) → the storage backends (`fetch`: one `Source` per scheme)
//! → the engine (`engine`: plan, parallel ranged transfers, temporary names, archives).
//! `settings` reads the environment once, `http` is the one HTTP stack, `error` the one error
//! type.
//!
//! The rules that keep it so:
//! - Pure stages (the URI grammar, selection, planning) do no I/O and no logging: they return
//!   what they found, and the caller acts and logs.
//! - The storage backends know nothing of the registry, and the registry side knows nothing of
//!   storage: which schemes can be fetched is `fetch`'s to say, handed to the registry side.
//! - Nothing below the face prints for the user: the engine reports through the `Watch` the
//!   face hands down, and errors travel up to the face, which prints the last line.
//! - Everything is `pub(crate)`. The public API is the re-exports below: the binary's entry,
//!   the pipeline the quickstart runs, and the seams the integration tests drive directly.

// The InferenceService controller, the second binary (`src/bin/mr-controller.rs`), and the
// Kubernetes API client only it uses.
mod controller;
mod digest;
mod engine;
mod error;
mod face;
mod fetch;
mod http;
mod kube;
mod policy;
mod registry;
mod settings;
mod uri;

// The fuzz targets' entry points (fuzz/): public only because a fuzz crate cannot reach
// pub(crate) items; not part of the API.
#[doc(hidden)]
pub mod fuzzing;

use std::path::{Path, PathBuf};

pub use controller::main as controller_main;
pub use engine::{Options, Summary, Watch, download};
pub use error::Error;
pub use face::cli::Pair;
pub use face::progress::Progress;
pub use face::{init_logging, main};
pub use fetch::{Compression, Layer, Object, Source};
pub use http::{Trust, agent, get_resumable};
pub use settings::{Settings, TlsSettings};
pub use uri::percent_decode;

use crate::engine::archive;
use crate::error::redact_url;
use crate::registry::resolve::{self, Resolution};
use crate::uri::{RegistryUri, is_registry_uri};

/// Resolves a `model-registry://` URI and checks the artifact URI against the policy.
pub(crate) fn resolve_uri(uri: &str, settings: &Settings) -> Result<Resolution, Error> {
    let parsed = RegistryUri::parse(uri)?;
    for key in uri::unknown_parameters(uri) {
        log::warn!("ignoring unknown query parameter '{key}' in model-registry:// URI");
    }
    log::info!("resolving {uri}");
    let agent = http::registry_agent(&settings.tls, settings.registry.ca_file.as_slice())?;
    // The registry side does not know the storage schemes: the storage side says which it can
    // fetch.
    let resolution = resolve::resolve(&parsed, &settings.registry, &agent, &fetch::can_fetch)?;
    policy::check(
        &resolution.artifact_uri,
        settings.allowed_artifact_prefixes.as_deref(),
    )?;
    Ok(resolution)
}

/// What one `SRC_URI DEST_DIR` pair came to, as far as it got: for the result the face
/// writes (`face::result`).
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// The source URI as logged: no query, no password.
    pub(crate) source: String,
    pub(crate) dest: PathBuf,
    /// What a `model-registry://` URI resolved to.
    pub(crate) resolution: Option<Resolution>,
    /// The download, once done.
    pub(crate) summary: Option<Summary>,
    /// Files extracted from a lone archive, or from a source's layers.
    pub(crate) extracted: Option<usize>,
    /// The content address the source resolved to (an OCI manifest's `sha256:HEX`).
    pub(crate) manifest_digest: Option<String>,
}

/// Processes each `SRC_URI DEST_DIR` pair in order; stops at the first failure. `watch`
/// shows the user each download's plan, progress and summary.
pub fn run(
    pairs: &[Pair],
    options: &Options,
    settings: &Settings,
    watch: &dyn Watch,
) -> Result<(), Error> {
    run_noting(pairs, options, settings, watch, &mut Vec::new())
}

/// `run`, noting in `outcomes` what each pair came to, the failed one included.
pub(crate) fn run_noting(
    pairs: &[Pair],
    options: &Options,
    settings: &Settings,
    watch: &dyn Watch,
    outcomes: &mut Vec<Outcome>,
) -> Result<(), Error> {
    // The patterns and pins are the environment's; the rest of the options the command line's.
    let options = &Options {
        filter: settings.filter.clone(),
        pins: settings.pins.clone(),
        ..options.clone()
    };
    if options.pins.pinned() && pairs.len() > 1 {
        let var = match options.pins.digest {
            Some(_) => engine::verify::DIGEST_VAR,
            None => engine::verify::MANIFEST_VAR,
        };
        let reason = format!(
            "it pins the files of one SRC_URI DEST_DIR pair, and {} pairs are given",
            pairs.len()
        );
        return Err(Error::env(var, reason));
    }
    for pair in pairs {
        // A model-registry:// URI's query is ?namespace=, no secret, and redacting it would hide
        // what the parser objects to; only a password (which the parser refuses) is hidden.
        let shown = if is_registry_uri(&pair.src) {
            error::redact_password(&pair.src)
        } else {
            redact_url(&pair.src)
        };
        log::info!("{shown} -> {}", pair.dest.display());
        outcomes.push(Outcome {
            source: shown,
            dest: pair.dest.clone(),
            ..Outcome::default()
        });
        let outcome = outcomes.last_mut().expect("just pushed");
        let source = if is_registry_uri(&pair.src) {
            let resolution = resolve_uri(&pair.src, settings)?;
            let uri = resolution.artifact_uri.clone();
            outcome.resolution = Some(resolution);
            uri
        } else {
            pair.src.clone()
        };
        download_into(&source, &pair.dest, options, settings, watch, outcome)?;
    }
    Ok(())
}

/// Downloads everything a storage URI names into `dest`, and extracts it when it is a lone
/// archive; notes in `outcome` what it came to.
fn download_into(
    uri: &str,
    dest: &Path,
    options: &Options,
    settings: &Settings,
    watch: &dyn Watch,
    outcome: &mut Outcome,
) -> Result<(), Error> {
    let (source, prefix) = fetch::open(uri, settings)?;
    // Known once the source is open: a failed download still says what it was pinned to.
    outcome.manifest_digest = source.resolved_digest();
    let shown = redact_url(uri);
    let (summary, extracted) = match source.layers().is_empty() {
        true => download_objects(&*source, &prefix, &shown, dest, options, watch)?,
        false => download_layers(&*source, &prefix, &shown, dest, options, watch)?,
    };
    outcome.summary = Some(summary);
    outcome.extracted = extracted;
    Ok(())
}

/// A source's objects, a lone archive among them extracted.
fn download_objects(
    source: &dyn Source,
    prefix: &str,
    shown: &str,
    dest: &Path,
    options: &Options,
    watch: &dyn Watch,
) -> Result<(Summary, Option<usize>), Error> {
    let summary = download(source, prefix, shown, dest, options, watch)?;
    let mut extracted = None;
    if let [only] = summary.paths.as_slice()
        && let Some(kind) = archive::Format::of(only)
    {
        let path = dest.join(only);
        if options.dry_run {
            log::info!("dry run: {} would be extracted and removed", path.display());
        } else {
            let files = archive::extract(&path, kind, dest)?;
            extracted = Some(files);
            log::info!(
                "extracted {files} file(s) from {} and removed it",
                path.display()
            );
        }
    }
    Ok((summary, extracted))
}

/// A source with layers (an OCI artifact's tar layers, an image): its objects, if any, then
/// the layers extracted in order.
fn download_layers(
    source: &dyn Source,
    prefix: &str,
    shown: &str,
    dest: &Path,
    options: &Options,
    watch: &dyn Watch,
) -> Result<(Summary, Option<usize>), Error> {
    let summary = match source.list(prefix)?.is_empty() {
        true => Summary::default(),
        false => download(source, prefix, shown, dest, options, watch)?,
    };
    let layers = source.layers();
    if options.dry_run {
        for layer in layers {
            log::info!(
                "dry run: layer {} ({} bytes) would be extracted into {}",
                layer.key,
                layer.size,
                dest.display()
            );
        }
        return Ok((summary, None));
    }
    let started = std::time::Instant::now();
    let applied = engine::layers::apply(
        source,
        layers,
        shown,
        dest,
        &options.filter,
        options.jobs,
        watch,
    )?;
    let seconds = started.elapsed().as_secs_f64();
    log::info!(
        "extracted {} file(s) from {} layer(s) into {}: {} bytes in {seconds:.2} s ({:.1} MiB/s){}",
        applied.files,
        layers.len(),
        dest.display(),
        applied.bytes,
        face::progress::mib_per_s(applied.bytes, seconds),
        match applied.skipped {
            0 => String::new(),
            n => format!("; {n} layer(s) already applied"),
        }
    );
    let files = applied.files;
    Ok((summary, Some(files)))
}
