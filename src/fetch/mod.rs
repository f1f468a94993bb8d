//! Where bytes come from: the one interface every storage backend implements, and the
//! `match` that picks the backend for a URI.
//!
//! A source does two things: list the objects under a prefix, and write a byte range of one
//! object into a writer. Everything else (path mapping, parallelism, parts, temporary names,
//! resume, progress) is the engine's (`download`), written once for every backend.

pub mod http;
pub mod local;
pub mod s3;
pub mod sts;

use std::io::Write;
use std::ops::Range;

use crate::error::{Error, redact_url};
use crate::settings::Settings;
use crate::uri::StorageKind;

/// One object a source lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// The full key (for a directory or a single file: the path below what the URI names).
    pub key: String,
    /// Size in bytes, when the source knows it before reading.
    pub size: Option<u64>,
    /// Checksum or ETag, when the store gives one.
    pub etag: Option<String>,
    /// `read` honours ranges for this object (so it can be split into parts and resumed).
    pub ranges: bool,
    /// The MD5 of the object's bytes, when the store says it: the engine checks it when the
    /// object arrives in one piece (computing it costs nothing extra then).
    pub md5: Option<[u8; 16]>,
}

/// A storage backend.
pub trait Source: Sync {
    /// Every object whose key starts with `prefix`, as a plain string prefix; the engine
    /// applies the `/` boundary, so a source may leave out keys that cross it (`model2/` for
    /// `model`).
    fn list(&self, prefix: &str) -> Result<Vec<Object>, Error>;

    /// Writes the bytes of `range` of the object `key` (the whole object for `None`) to `out`,
    /// in order, and returns once the last byte is written. A source retries and resumes on its
    /// own; an error from `out` ends the read at once.
    fn read(&self, key: &str, range: Option<Range<u64>>, out: &mut dyn Write) -> Result<(), Error>;
}

/// A source ready to be listed, and the prefix its URI names.
pub struct Opened {
    pub source: Box<dyn Source>,
    pub prefix: String,
}

/// Picks and sets up the backend for a storage URI (not a `model-registry://` one).
pub fn open(uri: &str, settings: &Settings) -> Result<Opened, Error> {
    match StorageKind::of(uri) {
        Some(StorageKind::Http) => Ok(Opened {
            source: Box::new(http::HttpSource::open(uri, settings)?),
            prefix: String::new(),
        }),
        Some(StorageKind::Local) => Ok(Opened {
            source: Box::new(local::LocalSource::open(uri)?),
            prefix: String::new(),
        }),
        Some(StorageKind::S3) => {
            let (source, prefix) = s3::S3Source::open(uri, settings)?;
            Ok(Opened {
                source: Box::new(source),
                prefix,
            })
        }
        Some(kind) => Err(Error::NotImplemented {
            uri: redact_url(uri),
            scheme: kind.scheme().to_string(),
        }),
        None => Err(Error::Uri {
            uri: redact_url(uri),
            reason: "unsupported storage scheme (supported: model-registry://, s3://, gs://, Azure Blob https://, http(s)://, file:// or a path)".into(),
        }),
    }
}
