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

#[cfg(test)]
mod tests {
    use super::*;

    fn read_with(vars: &[(&str, &str)]) -> Result<HfSettings, Error> {
        let get = |k: &str| vars.iter().find(|v| v.0 == k).map(|v| v.1.to_string());
        read(&get)
    }

    #[test]
    fn endpoint_and_token_file_as_huggingface_hub_finds_them() {
        let s = read_with(&[]).unwrap();
        assert_eq!(s.endpoint, "https://huggingface.co");
        assert_eq!(s.token_file, None);
        let s = read_with(&[
            ("HF_ENDPOINT", "https://mirror.example.com/hf/"),
            ("HOME", "/home/u"),
            ("HF_TOKEN", " hf_s3cr3t \n"),
        ])
        .unwrap();
        assert_eq!(s.endpoint, "https://mirror.example.com/hf");
        let path = PathBuf::from("/home/u/.cache/huggingface/token");
        assert_eq!(s.token_file, Some((path, false)));
        assert_eq!(s.token.as_ref().unwrap().expose(), "hf_s3cr3t");
        assert!(!format!("{s:?}").contains("s3cr3t"));
        let s = read_with(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")]).unwrap();
        assert_eq!(
            s.token_file.unwrap().0,
            PathBuf::from("/x/huggingface/token")
        );
        let s = read_with(&[("HOME", "/h"), ("HF_HOME", "/hf")]).unwrap();
        assert_eq!(s.token_file.unwrap().0, PathBuf::from("/hf/token"));
        let s = read_with(&[("HF_HOME", "/hf"), ("HF_TOKEN_PATH", "/t")]).unwrap();
        assert_eq!(s.token_file, Some((PathBuf::from("/t"), true)));
        let e = read_with(&[("HF_ENDPOINT", "https://h/?token=s3cr3t")]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid value in HF_ENDPOINT: it has a query")
        );
        assert!(!e.to_string().contains("s3cr3t"));
        assert!(read_with(&[("HF_ENDPOINT", "ftp://h")]).is_err());
    }
}
