//! The binary: set up logging, parse the command line, run, and report. Nothing below `run`
//! prints a fatal error; this file prints it once, as the last line on stderr.

use std::process::ExitCode;

use mr_storage_initializer::cli::{self, Command};
use mr_storage_initializer::error::{Error, one_line};
use mr_storage_initializer::progress;
use mr_storage_initializer::settings::Settings;

fn main() -> ExitCode {
    mr_storage_initializer::init_logging();

    match main_inner() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if let Error::Usage(_) = err {
                eprintln!("{}", cli::USAGE);
            }
            if let Some(hint) = err.hint() {
                eprintln!("hint: {hint}");
            }
            eprintln!("error: {}", one_line(&err.to_string()));
            ExitCode::from(err.exit_code())
        }
    }
}

fn main_inner() -> Result<(), Error> {
    let command = cli::parse_args(std::env::args_os().skip(1))?;
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
            let resolution = mr_storage_initializer::resolve_uri(&uri, &settings)?;
            let json = serde_json::to_string(&resolution).expect("a Resolution always serializes");
            println!("{json}");
            Ok(())
        }
        Command::Run { pairs, options } => {
            let settings = Settings::from_env()?;
            let progress = progress::Progress::default();
            let result = mr_storage_initializer::run(&pairs, &options, &settings, &progress);
            if let Some(kib) = progress::peak_rss_kib() {
                log::debug!("peak memory (VmHWM): {kib} KiB");
            }
            result
        }
    }
}
