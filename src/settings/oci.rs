//! The `oci://` variables: where registry credentials are (the Docker config files the
//! container tools and KServe use), which registries speak plain HTTP, which platform an image
//! index is resolved for.

use std::path::PathBuf;

use crate::error::{Error, quote};

/// The Docker config KServe's webhook mounts for `oci+fetch://` (from the pod's first
/// imagePullSecret), read when no variable names another.
pub(crate) const KSERVE_DOCKER_CONFIG: &str = "/mnt/oci-fetch-auth/config.json";

/// OCI registry settings.
#[derive(Debug, Clone, Default)]
pub(crate) struct OciSettings {
    /// The Docker config files to look for credentials in, in order, each with the variable
    /// that named it (`None`: a default place, which may hold nothing).
    pub(crate) auth_files: Vec<(PathBuf, Option<&'static str>)>,
    /// `OCI_INSECURE_REGISTRIES`: `host[:port]` of registries reached over plain HTTP.
    pub(crate) insecure: Vec<String>,
    /// `OCI_PLATFORM` as `os/arch[/variant]`: which manifest of an image index is taken.
    pub(crate) platform: Option<String>,
    /// `OCI_MODEL_DIR` without its leading `/`: the folder of a container image ("modelcar")
    /// that lands in `DEST_DIR` (`models`; `""` for the whole image).
    pub(crate) model_dir: String,
}

/// The folder of a modelcar image that holds the model, as KServe's modelcars have it.
pub(crate) const MODEL_DIR: &str = "/models";

pub(super) fn read(get: &dyn Fn(&str) -> Option<String>) -> Result<OciSettings, Error> {
    let mut auth_files = Vec::new();
    if let Some(file) = get("REGISTRY_AUTH_FILE") {
        auth_files.push((PathBuf::from(file.trim()), Some("REGISTRY_AUTH_FILE")));
    }
    if let Some(dir) = get("DOCKER_CONFIG") {
        let dir = PathBuf::from(dir.trim());
        // A Kubernetes secret of type dockerconfigjson, mounted as a folder, holds
        // `.dockerconfigjson`; the Docker CLI's folder holds `config.json`.
        let file = match dir.join(".dockerconfigjson").exists() {
            true => dir.join(".dockerconfigjson"),
            false => dir.join("config.json"),
        };
        auth_files.push((file, Some("DOCKER_CONFIG")));
    }
    match get("KSERVE_OCI_DOCKER_CONFIG") {
        Some(file) => {
            auth_files.push((PathBuf::from(file.trim()), Some("KSERVE_OCI_DOCKER_CONFIG")))
        }
        None => auth_files.push((PathBuf::from(KSERVE_DOCKER_CONFIG), None)),
    }
    if let Some(home) = get("HOME") {
        auth_files.push((PathBuf::from(home).join(".docker/config.json"), None));
    }
    let insecure = get("OCI_INSECURE_REGISTRIES")
        .map(|v| {
            v.split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let platform = match get("OCI_PLATFORM") {
        Some(p) => {
            let p = p.trim().to_string();
            let parts: Vec<&str> = p.split('/').collect();
            if !(2..=3).contains(&parts.len()) || parts.iter().any(|s| s.is_empty()) {
                let reason = format!("{} is not os/arch[/variant] (linux/amd64)", quote(&p));
                return Err(Error::env("OCI_PLATFORM", reason));
            }
            Some(p)
        }
        None => None,
    };
    let model_dir = get("OCI_MODEL_DIR").unwrap_or_else(|| MODEL_DIR.into());
    let trimmed = model_dir.trim().trim_matches('/');
    if !trimmed.is_empty() {
        crate::engine::plan::safe_relative(trimmed).map_err(|why| {
            let reason = format!("{} is not a folder of the image: {why}", quote(&model_dir));
            Error::env("OCI_MODEL_DIR", reason)
        })?;
    }
    Ok(OciSettings {
        auth_files,
        insecure,
        platform,
        model_dir: trimmed.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_with(vars: &[(&str, &str)]) -> Result<OciSettings, Error> {
        let get = |k: &str| vars.iter().find(|v| v.0 == k).map(|v| v.1.to_string());
        read(&get)
    }

    #[test]
    fn defaults_and_overrides() {
        let s = read_with(&[]).unwrap();
        assert_eq!(s.platform, None);
        assert_eq!(s.model_dir, "models");
        assert_eq!(read_with(&[("OCI_MODEL_DIR", "/")]).unwrap().model_dir, "");
        assert_eq!(
            read_with(&[("OCI_MODEL_DIR", "/opt/model/")])
                .unwrap()
                .model_dir,
            "opt/model"
        );
        let e = read_with(&[("OCI_MODEL_DIR", "/a/../b")]).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "invalid value in OCI_MODEL_DIR: '/a/../b' is not a folder of the image"
            ),
            "{e}"
        );
        assert_eq!(s.auth_files, [(PathBuf::from(KSERVE_DOCKER_CONFIG), None)]);
        let s = read_with(&[
            ("REGISTRY_AUTH_FILE", "/run/auth.json"),
            ("DOCKER_CONFIG", "/nonexistent"),
            ("HOME", "/h"),
            ("OCI_INSECURE_REGISTRIES", "127.0.0.1:5000, Reg.local"),
            ("OCI_PLATFORM", "linux/arm64/v8"),
        ])
        .unwrap();
        let files: Vec<_> = s.auth_files.iter().map(|f| f.0.to_str().unwrap()).collect();
        assert_eq!(
            files,
            [
                "/run/auth.json",
                "/nonexistent/config.json",
                KSERVE_DOCKER_CONFIG,
                "/h/.docker/config.json"
            ]
        );
        assert_eq!(s.insecure, ["127.0.0.1:5000", "reg.local"]);
        assert_eq!(s.platform.as_deref(), Some("linux/arm64/v8"));
        let e = read_with(&[("OCI_PLATFORM", "amd64")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value in OCI_PLATFORM: 'amd64' is not os/arch[/variant] (linux/amd64)"
        );
    }
}
