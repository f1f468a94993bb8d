//! The face: everything the user sees and types. The command line (`cli`), the log format
//! and its filter, the progress line and the dry run's plan (`progress`, the engine's
//! `Watch`), and the one error line at the end. Nothing below it prints for the user.
//!
//! SIGTERM and SIGINT (the kubelet stopping the pod, Ctrl-C) are noted in
//! `engine::INTERRUPTED`: the engine stops its transfers and the run ends with
//! `error: interrupted by SIGTERM`, exit status 128 + the signal's number, leaving what a
//! failure leaves (temporary files and part journals a rerun resumes from). A stage that does
//! not look at the flag (a registry call, a blocked read, an archive being extracted) is cut
//! short by a watchdog thread that writes the same last line `GRACE` after the signal.

pub(crate) mod cli;
pub(crate) mod progress;
pub(crate) mod result;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use crate::engine::{INTERRUPTED, interrupted};
use crate::error::{Error, bounded_line, escape_controls};
use crate::fetch::hf::is_hf_uri;
use crate::fetch::oci::is_oci_uri;
use crate::settings::Settings;
use cli::Command;
use progress::Progress;

/// The binary's whole life: logging, the command line, the run, and the one error line.
pub fn main() -> ExitCode {
    init_logging();
    watch_signals();

    let result = main_inner();
    // A run a signal stopped fails with whatever the stage it stopped saw (a refused write);
    // the signal is the cause.
    let result = match (result, interrupted()) {
        (Err(_), Some(signal)) => Err(Error::Interrupted(signal)),
        (result, _) => result,
    };
    if !claim_last_line() {
        // The watchdog is writing the last line and ends the process.
        loop {
            thread::park();
        }
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if let Error::Usage(_) = err {
                eprintln!("{}", cli::USAGE);
            }
            if let Some(hint) = err.hint() {
                eprintln!("hint: {}", bounded_line(hint));
            }
            eprintln!("error: {}", bounded_line(&err.to_string()));
            ExitCode::from(err.exit_code())
        }
    }
}

/// How long after a signal the run may take to stop by itself before the watchdog ends it.
const GRACE: Duration = Duration::from_secs(2);

// Set by whoever writes the last line (the main thread, or the watchdog), so only one does.
static LAST_LINE: AtomicBool = AtomicBool::new(false);

fn claim_last_line() -> bool {
    LAST_LINE
        .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
}

// SIGTERM and SIGINT set `INTERRUPTED` instead of ending the process at once; the watchdog
// ends it if the run has not stopped `GRACE` later.
fn watch_signals() {
    use signal_hook::consts::signal::{SIGINT, SIGTERM};
    for signal in [SIGTERM, SIGINT] {
        if let Err(e) = signal_hook::flag::register_usize(signal, &INTERRUPTED, signal as usize) {
            // Without the handler the signal still ends the process, only without a last line.
            log::warn!("cannot handle signal {signal}: {e}");
            return;
        }
    }
    let spawned = thread::Builder::new()
        .name("signal watchdog".into())
        .spawn(watchdog);
    if let Err(e) = spawned {
        log::warn!("cannot start the signal watchdog: {e}");
    }
}

fn watchdog() {
    let signal = loop {
        if let Some(signal) = interrupted() {
            break signal;
        }
        thread::sleep(Duration::from_millis(100));
    };
    thread::sleep(GRACE);
    if claim_last_line() {
        let err = Error::Interrupted(signal);
        eprintln!("error: {err}");
        std::process::exit(err.exit_code().into());
    }
}

fn main_inner() -> Result<(), Error> {
    // A command line the run cannot start with fails the container too: the result says why.
    let command = cli::parse_args(std::env::args_os().skip(1))
        .inspect_err(|e| _ = write_result(&[], Some(e), 0.0))?;
    match command {
        Command::Help => {
            print!("{}", cli::HELP);
            Ok(())
        }
        Command::Version => {
            println!("mr-storage-initializer {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Resolve(uri) => {
            let settings = Settings::from_env()?;
            // The patterns the download would apply, so the line says what would be fetched.
            #[derive(serde::Serialize)]
            struct Resolved<'a, T> {
                #[serde(flatten)]
                resolution: T,
                #[serde(skip_serializing_if = "<[_]>::is_empty")]
                storage_allow_patterns: &'a [String],
                #[serde(skip_serializing_if = "<[_]>::is_empty")]
                storage_ignore_patterns: &'a [String],
            }
            fn with_patterns<T: serde::Serialize>(
                resolution: T,
                settings: &Settings,
            ) -> serde_json::Result<String> {
                serde_json::to_string(&Resolved {
                    resolution,
                    storage_allow_patterns: &settings.filter.allow,
                    storage_ignore_patterns: &settings.filter.ignore,
                })
            }
            let json = if is_hf_uri(&uri) {
                with_patterns(crate::fetch::hf::pin(&uri, &settings)?, &settings)
            } else if is_oci_uri(&uri) {
                with_patterns(crate::fetch::oci::pin(&uri, &settings)?, &settings)
            } else {
                with_patterns(crate::resolve_uri(&uri, &settings)?, &settings)
            };
            let json = json.expect("a resolution always serializes");
            println!("{json}");
            Ok(())
        }
        Command::Run {
            pairs,
            options,
            json,
        } => {
            let started = std::time::Instant::now();
            let mut outcomes = Vec::new();
            let result = Settings::from_env().and_then(|settings| {
                let progress = Progress::default();
                crate::run_noting(&pairs, &options, &settings, &progress, &mut outcomes)
            });
            if let Some(kib) = progress::peak_rss_kib() {
                log::debug!("peak memory (VmHWM): {kib} KiB");
            }
            let result = match (result, interrupted()) {
                (Err(_), Some(signal)) => Err(Error::Interrupted(signal)),
                (result, _) => result,
            };
            // A dry run writes nothing, the termination message included.
            if !options.dry_run {
                let seconds = started.elapsed().as_secs_f64();
                let text = write_result(&outcomes, result.as_ref().err(), seconds);
                if json {
                    println!("{text}");
                }
            }
            result
        }
    }
}

// Writes the result to the termination message file, if there is one; returns its text.
fn write_result(outcomes: &[crate::Outcome], error: Option<&Error>, seconds: f64) -> String {
    let text = result::render(outcomes, error, seconds);
    if let Some((path, named)) = result::path(std::env::var(result::FILE_VAR).ok()) {
        result::write(&path, named, &text);
    }
    text
}

/// Sends `log` records to stderr as `level: message`, filtered by `RUST_LOG` (see
/// `log_filter`).
pub fn init_logging() {
    use std::io::Write;
    let rust_log = std::env::var("RUST_LOG").ok();
    env_logger::Builder::new()
        .parse_filters(&log_filter(rust_log.as_deref()))
        // Trace records do not exist: the `log` crate is built with `max_level_debug`.
        // Keys, names and URIs in messages come from listings and servers: their control
        // characters are escaped, as in the error line.
        .format(|buf, record| {
            writeln!(
                buf,
                "{}: {}",
                record.level().as_str().to_ascii_lowercase(),
                escape_controls(&record.args().to_string())
            )
        })
        .init();
}

/// The `env_logger` filter for a `RUST_LOG` value (default `info`). A bare level (`debug`) is
/// this program's level; other crates stay at `info` or quieter, since ureq and rustls write
/// dozens of lines per request at `debug`. `module=level` directives (`ureq=debug`) apply as
/// written, and win over the bare level.
pub(crate) fn log_filter(rust_log: Option<&str>) -> String {
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
    filter.extend(modules.into_iter().map(|module| format!(",{module}")));
    filter.extend(text.map(|text| format!("/{text}")));
    filter
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
