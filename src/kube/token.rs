//! A bearer token that follows rotation: a value given once, or a file (a projected
//! service-account token, kubeconfig's `tokenFile`, `MODEL_REGISTRY_TOKEN_FILE`) re-read when
//! the copy in memory is older than `MAX_AGE`, and at once after a 401 (`stale`).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, quote};
use crate::settings::Secret;

/// How long a token read from a file is used before the file is read again: the kubelet
/// rotates projected tokens well before they expire, and client-go re-reads each minute too.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(60);

/// Where a token comes from.
#[derive(Debug)]
pub(crate) enum Token {
    Value(Secret),
    File {
        path: PathBuf,
        /// The variable or kubeconfig field that named it, for errors.
        named_by: String,
        cached: Mutex<Option<(Secret, Instant)>>,
    },
}

impl Token {
    /// A token read from `path` when needed.
    pub(crate) fn file(path: impl Into<PathBuf>, named_by: impl Into<String>) -> Token {
        Token::File {
            path: path.into(),
            named_by: named_by.into(),
            cached: Mutex::new(None),
        }
    }

    /// What kind of source it is, for the start-up line and `--print-config`: never the value.
    pub(crate) fn describe(&self) -> String {
        match self {
            Token::Value(_) => "a value".into(),
            Token::File { path, .. } => format!("file {}", path.display()),
        }
    }

    /// The token now: the cached copy while it is fresh, else the file read again.
    pub(crate) fn get(&self) -> Result<Secret, Error> {
        let (path, named_by, cached) = match self {
            Token::Value(v) => return Ok(v.clone()),
            Token::File {
                path,
                named_by,
                cached,
            } => (path, named_by, cached),
        };
        let mut cached = cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((token, read)) = cached.as_ref()
            && read.elapsed() < MAX_AGE
        {
            return Ok(token.clone());
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::io("read token file", path, e))?;
        let token = text.trim();
        if token.is_empty() {
            let reason = format!("{} is empty", quote(&path.to_string_lossy()));
            return Err(Error::env(named_by.as_str(), reason));
        }
        let token = Secret::new(token);
        *cached = Some((token.clone(), Instant::now()));
        Ok(token)
    }

    /// Forgets the cached copy (the server said 401): the next `get` reads the file.
    pub(crate) fn stale(&self) {
        if let Token::File { cached, .. } = self {
            *cached.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
}
