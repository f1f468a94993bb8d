//! The Hugging Face Hub variables, under the names `huggingface_hub` reads, so a pod that
//! worked with KServe's initializer works unchanged.

use std::path::PathBuf;

use super::Secret;
use crate::error::Error;
use crate::uri::BaseUrl;

/// The public Hub, when `HF_ENDPOINT` is unset.
pub(crate) const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Hub settings.
#[derive(Debug, Clone)]
pub(crate) struct HfSettings {
    /// `HF_ENDPOINT` as `scheme://host[:port][/prefix]` (a mirror may live under a path).
    pub(crate) endpoint: String,
    /// `HF_TOKEN`: wins over any token file.
    pub(crate) token: Option<Secret>,
    /// Where `huggingface_hub` looks for a saved token: `HF_TOKEN_PATH`, else `HF_HOME/token`,
    /// else `XDG_CACHE_HOME/huggingface/token` or `HOME/.cache/huggingface/token`. Read when
    /// a hf:// URI is opened; `true` when a variable named the file itself.
    pub(crate) token_file: Option<(PathBuf, bool)>,
}

impl Default for HfSettings {
    fn default() -> HfSettings {
        HfSettings {
            endpoint: DEFAULT_ENDPOINT.into(),
            token: None,
            token_file: None,
        }
    }
}

pub(super) fn read(get: &dyn Fn(&str) -> Option<String>) -> Result<HfSettings, Error> {
    let endpoint = match get("HF_ENDPOINT") {
        Some(value) => {
            if value.contains(['?', '#']) {
                let reason = "it has a query or fragment; give scheme://host[:port][/path]";
                return Err(Error::env("HF_ENDPOINT", reason));
            }
            let base = BaseUrl::parse(value.trim(), "https")
                .map_err(|reason| Error::env("HF_ENDPOINT", reason))?;
            base.url()
        }
        None => DEFAULT_ENDPOINT.into(),
    };
    let token_file = match get("HF_TOKEN_PATH") {
        Some(path) => Some((PathBuf::from(path.trim()), true)),
        None => {
            let home = get("HF_HOME").map(PathBuf::from).or_else(|| {
                let cache = get("XDG_CACHE_HOME")
                    .map(PathBuf::from)
                    .or_else(|| get("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
                Some(cache.join("huggingface"))
            });
            home.map(|h| (h.join("token"), false))
        }
    };
    Ok(HfSettings {
        endpoint,
        token: get("HF_TOKEN").map(|t| Secret::new(t.trim())),
        token_file,
    })
}
