//! Registry credentials and challenges: the per-registry entries of Docker config files
//! (`auths` in `config.json`, podman's `auth.json`, a mounted `.dockerconfigjson` secret), and
//! the `WWW-Authenticate` challenge a registry answers with (`Basic`, or `Bearer` with the
//! token server's realm, service and scope). Parsing only: the requests are `oci`'s.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use crate::error::{Error, quote};
use crate::settings::Secret;

/// A user name and password (or identity token) for one registry.
#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    pub(crate) user: String,
    pub(crate) password: Secret,
}

impl Credentials {
    /// The `Authorization` value of basic auth.
    pub(crate) fn basic(&self) -> Secret {
        let pair = format!("{}:{}", self.user, self.password.expose());
        Secret::new(format!("Basic {}", STANDARD.encode(pair)))
    }
}

#[derive(Deserialize)]
struct Config {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

#[derive(Deserialize)]
struct Entry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// The credentials for `registry` (`host[:port]`) in the first of `files` that has an entry
/// for it, and the file they came from. A file a variable named must be readable; a default
/// place may hold nothing.
pub(crate) fn find(
    registry: &str,
    files: &[(PathBuf, Option<&'static str>)],
) -> Result<Option<(Credentials, String)>, Error> {
    for (path, var) in files {
        let shown = quote(&path.to_string_lossy());
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => match var {
                Some(var) => return Err(Error::env(*var, format!("cannot read {shown}: {e}"))),
                None => continue,
            },
        };
        let bad = |why: String| {
            let reason = format!("{shown} is not a Docker config: {why}");
            Error::env(var.unwrap_or("KSERVE_OCI_DOCKER_CONFIG"), reason)
        };
        // Never serde's words: they quote the value they did not expect, which may be a
        // credential (an entry written as a bare base64 string).
        let config: Config = serde_json::from_str(&text).map_err(|e| {
            let what = match e.classify() {
                serde_json::error::Category::Data => "a value not of the Docker config's shape",
                serde_json::error::Category::Eof => "the JSON ends early",
                _ => "not JSON",
            };
            bad(format!(
                "{what} at line {}, column {}",
                e.line(),
                e.column()
            ))
        })?;
        let Some((_, entry)) = config.auths.iter().find(|(k, _)| key_host(k) == registry) else {
            continue;
        };
        let credentials = entry
            .credentials()
            .map_err(|why| bad(format!("the entry for {}: {why}", quote(registry))))?;
        return Ok(Some((credentials, path.to_string_lossy().into_owned())));
    }
    Ok(None)
}

impl Entry {
    fn credentials(&self) -> Result<Credentials, String> {
        if let Some(token) = &self.identitytoken {
            // An identity token is sent as the password of the token user (`<token>`).
            let user = "<token>".to_string();
            return Ok(Credentials {
                user,
                password: Secret::new(token.clone()),
            });
        }
        if let (Some(user), Some(password)) = (&self.username, &self.password) {
            return Ok(Credentials {
                user: user.clone(),
                password: Secret::new(password.clone()),
            });
        }
        let auth = self
            .auth
            .as_deref()
            .ok_or("it has no auth, username/password or identitytoken")?;
        let decoded = STANDARD
            .decode(auth.trim())
            .map_err(|_| "its auth is not base64")?;
        let text = String::from_utf8(decoded).map_err(|_| "its auth is not text")?;
        let (user, password) = text
            .split_once(':')
            .ok_or("its auth is not user:password")?;
        Ok(Credentials {
            user: user.into(),
            password: Secret::new(password),
        })
    }
}

// An `auths` key's `host[:port]`: keys may be URLs (`https://index.docker.io/v1/`).
fn key_host(key: &str) -> String {
    let rest = key.split_once("://").map_or(key, |(_, rest)| rest);
    rest.split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// What a `WWW-Authenticate` header asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `Basic realm="x"` or `Bearer realm="...",service="...",scope="..."` (values
/// quoted or not; a quoted scope may hold commas).
pub(crate) fn challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = params(rest);
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|p| p.1.clone())
    };
    Some(Challenge::Bearer {
        realm: get("realm")?,
        service: get("service"),
        scope: get("scope"),
    })
}

fn params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        out.push((name.trim().to_string(), value.trim().to_string()));
    }
}

/// The token in a token server's answer: `token`, else `access_token`.
pub(crate) fn token_of(body: &str) -> Option<Secret> {
    #[derive(Deserialize)]
    struct Answer {
        token: Option<String>,
        access_token: Option<String>,
    }
    let answer: Answer = serde_json::from_str(body).ok()?;
    answer
        .token
        .or(answer.access_token)
        .filter(|t| !t.is_empty())
        .map(Secret::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let c = challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(
            challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            challenge("bearer realm=http://t/x"),
            Some(Challenge::Bearer {
                realm: "http://t/x".into(),
                service: None,
                scope: None
            })
        );
        assert_eq!(challenge("Bearer service=x"), None, "no realm");
        assert_eq!(challenge("Negotiate"), None);
    }

    #[test]
    fn docker_config_entries() {
        let dir = std::env::temp_dir().join(format!("mrsi-oci-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config.json");
        let auth = STANDARD.encode("alice:s3cr3t");
        let json = format!(
            r#"{{"auths":{{"https://Reg.example:5000/v1/":{{"auth":"{auth}"}},"other":{{"username":"u","password":"p"}}}}}}"#
        );
        std::fs::write(&file, json).unwrap();
        let files = [
            (dir.join("missing.json"), None),
            (file.clone(), Some("DOCKER_CONFIG")),
        ];
        let (c, from) = find("reg.example:5000", &files).unwrap().unwrap();
        assert_eq!((c.user.as_str(), c.password.expose()), ("alice", "s3cr3t"));
        assert_eq!(from, file.to_string_lossy());
        assert!(!format!("{c:?}").contains("s3cr3t"));
        assert_eq!(c.basic().expose(), format!("Basic {auth}"));
        assert!(find("reg.example", &files).unwrap().is_none());
        let named = [(dir.join("missing.json"), Some("REGISTRY_AUTH_FILE"))];
        let e = find("h", &named).unwrap_err().to_string();
        assert!(
            e.starts_with("invalid value in REGISTRY_AUTH_FILE: cannot read"),
            "{e}"
        );
        // An entry written as a bare string: refused without quoting it (it is a credential).
        std::fs::write(&file, format!(r#"{{"auths":{{"h":"{auth}"}}}}"#)).unwrap();
        let e = find("h", &files).unwrap_err().to_string();
        assert!(!e.contains(&auth), "{e}");
        assert!(
            e.ends_with("is not a Docker config: a value not of the Docker config's shape at line 1, column 32"),
            "{e}"
        );
        std::fs::write(&file, r#"{"auths":{"h":{"auth":"!!"}}}"#).unwrap();
        let e = find("h", &files).unwrap_err().to_string();
        assert!(
            e.ends_with("the entry for 'h': its auth is not base64"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn token_answers() {
        assert_eq!(token_of(r#"{"token":"t1"}"#).unwrap().expose(), "t1");
        assert_eq!(token_of(r#"{"access_token":"t2"}"#).unwrap().expose(), "t2");
        assert!(token_of(r#"{"token":""}"#).is_none());
        assert!(token_of("<html>").is_none());
    }
}
