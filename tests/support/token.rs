//! A registry token server on 127.0.0.1, the other half of distribution's token auth: the
//! registry answers `401` with `WWW-Authenticate: Bearer realm=...,service=...,scope=...`, the
//! client asks this server (anonymously or with basic auth) and presents the token it gets.
//!
//! Tokens are JWTs signed ES256 with a key made by `openssl` at test time; the registry trusts
//! its self-signed certificate (`rootcertbundle`) and finds it in each token's `x5c` header.
//! Every request is recorded (the user it authenticated as, or none), and a password other
//! than the one set is refused.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use super::server::{Server, read_head};

pub const SERVICE: &str = "mrsi-test-registry";
pub const ISSUER: &str = "mrsi-test-token-server";

/// One request to the token server: the user of its basic auth, and its query.
#[derive(Debug, Clone)]
pub struct Asked {
    pub user: Option<String>,
    pub query: String,
}

pub struct TokenServer {
    server: Server,
    /// The certificate the registry must trust (`rootcertbundle`).
    pub cert: PathBuf,
    asked: Arc<Mutex<Vec<Asked>>>,
}

impl TokenServer {
    /// Grants pull to anyone when `user` is `None`; else only to `user` with `password`.
    pub fn start(dir: &Path, user: Option<(&str, &str)>) -> TokenServer {
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .current_dir(dir)
                .args(args)
                .output()
                .expect("openssl must be installed for the token server");
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        openssl(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "token.key",
        ]);
        openssl(&[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            "token.key",
            "-outform",
            "DER",
            "-out",
            "token.p8",
        ]);
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            "token.key",
            "-subj",
            "/CN=token",
            "-days",
            "2",
            "-out",
            "token.pem",
        ]);
        openssl(&[
            "x509",
            "-in",
            "token.pem",
            "-outform",
            "DER",
            "-out",
            "token.der",
        ]);
        let pkcs8 = std::fs::read(dir.join("token.p8")).unwrap();
        let cert = STANDARD.encode(std::fs::read(dir.join("token.der")).unwrap());
        let user = user.map(|(u, p)| (u.to_string(), STANDARD.encode(format!("{u}:{p}"))));
        let asked = Arc::new(Mutex::new(Vec::new()));
        let seen = asked.clone();
        let server = Server::start("127.0.0.1:0", move |mut stream| {
            let Some((_, target, headers)) = read_head(&stream) else {
                return;
            };
            let query = target.split_once('?').map_or("", |q| q.1).to_string();
            let basic = headers
                .get("authorization")
                .and_then(|a| a.strip_prefix("Basic "))
                .map(str::to_string);
            let who = basic.as_deref().and_then(|b| {
                let pair = String::from_utf8(STANDARD.decode(b).ok()?).ok()?;
                Some(pair.split_once(':')?.0.to_string())
            });
            seen.lock().unwrap().push(Asked {
                user: who.clone(),
                query: query.clone(),
            });
            let granted = match &user {
                None => true,
                Some((_, wanted)) => basic.as_deref() == Some(wanted.as_str()),
            };
            if !granted {
                let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#;
                let _ = write!(
                    stream,
                    "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                return;
            }
            let scope = query
                .split('&')
                .find_map(|p| p.strip_prefix("scope="))
                .map(|s| mr_storage_initializer::percent_decode(s).unwrap())
                .unwrap_or_default();
            let token = jwt(&pkcs8, &cert, who.as_deref().unwrap_or(""), &scope);
            let body = format!(r#"{{"token":"{token}","expires_in":300}}"#);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        });
        TokenServer {
            server,
            cert: dir.join("token.pem"),
            asked,
        }
    }

    pub fn realm(&self) -> String {
        format!("http://{}/token", self.server.addr())
    }

    /// The registry's `auth:` section pointing at this server.
    pub fn registry_config(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            self.realm(),
            self.cert.display()
        )
    }

    pub fn asked(&self) -> Vec<Asked> {
        self.asked.lock().unwrap().clone()
    }
}

// A token granting what `scope` (`repository:NAME:pull`) asks.
fn jwt(pkcs8: &[u8], cert: &str, subject: &str, scope: &str) -> String {
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    let mut parts = scope.splitn(3, ':');
    let (kind, name, actions) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "x5c": [cert]});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": subject, "aud": SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{subject}"),
        "access": [{"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}],
    });
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let rng = ring::rand::SystemRandom::new();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng).unwrap();
    let signature = key.sign(&rng, signed.as_bytes()).unwrap();
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}
