//! What a download keeps and what it must hash to: KServe's file patterns
//! (`STORAGE_ALLOW_PATTERNS`, `STORAGE_IGNORE_PATTERNS`) and the pinned digests
//! (`VERIFICATION_DIGEST`, `MRSI_DIGEST_MANIFEST` or `MRSI_DIGEST_MANIFEST_FILE`,
//! `MRSI_SHA256`). The formats are the engine's (`engine::filter`, `engine::verify`).

use std::io::Read;

use crate::engine::filter::{self, ALLOW_VAR, Filter, IGNORE_VAR};
use crate::engine::verify::{self, DIGEST_VAR, MANIFEST_VAR, Pins};
use crate::error::{Error, quote};

const MANIFEST_FILE_VAR: &str = "MRSI_DIGEST_MANIFEST_FILE";
// A manifest is about 100 bytes a file: this is far above any model's.
const MANIFEST_LIMIT: u64 = 16 << 20;

pub(super) fn read(get: &dyn Fn(&str) -> Option<String>) -> Result<(Filter, Pins), Error> {
    let list = |var: &str| -> Result<Vec<String>, Error> {
        let value = get(var).unwrap_or_default();
        filter::parse_list(&value).map_err(|reason| Error::env(var, reason))
    };
    let filter = Filter {
        allow: list(ALLOW_VAR)?,
        ignore: list(IGNORE_VAR)?,
    };
    let digest = get(DIGEST_VAR)
        .map(|v| verify::parse_digest(&v).map_err(|r| Error::env(DIGEST_VAR, r)))
        .transpose()?;
    let manifest = match (get(MANIFEST_VAR), get(MANIFEST_FILE_VAR)) {
        (Some(_), Some(_)) => {
            let reason = format!("{MANIFEST_VAR} is set too: set one of them");
            return Err(Error::env(MANIFEST_FILE_VAR, reason));
        }
        (Some(text), None) => {
            Some(verify::parse_manifest(&text).map_err(|r| Error::env(MANIFEST_VAR, r))?)
        }
        (None, Some(path)) => {
            let text = read_manifest(&path).map_err(|r| Error::env(MANIFEST_FILE_VAR, r))?;
            let parsed = verify::parse_manifest(&text)
                .map_err(|r| Error::env(MANIFEST_FILE_VAR, format!("{}: {r}", quote(&path))))?;
            Some(parsed)
        }
        (None, None) => None,
    };
    let always = super::flag("MRSI_SHA256", get("MRSI_SHA256"))?.unwrap_or(false);
    let pins = Pins {
        digest,
        manifest,
        always,
    };
    Ok((filter, pins))
}

fn read_manifest(path: &str) -> Result<String, String> {
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", quote(path));
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut text = String::new();
    file.take(MANIFEST_LIMIT + 1)
        .read_to_string(&mut text)
        .map_err(cannot)?;
    if text.len() as u64 > MANIFEST_LIMIT {
        return Err(format!(
            "{} is larger than {} MiB",
            quote(path),
            MANIFEST_LIMIT >> 20
        ));
    }
    Ok(text)
}
