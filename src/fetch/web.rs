//! HTTP(S) source: one file, saved under the last segment of the URL's path.
//!
//! Listing is one ranged GET of the first byte: a 206 tells the size and that ranges work
//! (so the file is fetched in parallel parts and resumed); a 200 tells the server ignores
//! ranges, and the file is one stream. A HEAD is not used: presigned URLs are signed for GET
//! only. Extra headers come from `<hostname>-headers` (KServe's convention) and go to that
//! host only. No Content-Type check: model files are served as anything.

use std::io::Write;
use std::ops::Range;

use ureq::Agent;

use crate::engine::plan::safe_relative;
use crate::error::{Error, quote, redact_url};
use crate::fetch::{HINT_TLS, Object, Source, failed};
use crate::http::{self, Failure, StatusError};
use crate::settings::{Secret, Settings};
use crate::uri::{percent_decode, url_host};

/// What to do when an `https://` URL names a server that speaks plain HTTP.
pub(crate) const PLAIN_HTTP_HINT: &str = "the server answers plain HTTP: use an http:// URL";

/// One `http://` or `https://` file.
pub(crate) struct WebSource {
    agent: Agent,
    url: String,
    headers: Vec<(String, Secret)>,
    name: String,
}

impl WebSource {
    /// Checks the URL names a file and reads the host's `-headers` variable.
    pub(crate) fn open(uri: &str, settings: &Settings) -> Result<WebSource, Error> {
        let name = file_name(uri).map_err(|reason| Error::uri(redact_url(uri), reason))?;
        let host = url_host(uri).to_ascii_lowercase();
        let headers = match settings.http_headers.get(&host) {
            Some(json) => parse_headers(json)
                .map_err(|reason| Error::env(format!("{host}-headers"), reason))?,
            None => Vec::new(),
        };
        Ok(WebSource {
            agent: http::agent(&settings.tls, http::Trust::Usual(&[]))?,
            url: uri.to_string(),
            headers,
            name,
        })
    }

    fn headers(&self) -> Vec<(&str, &str)> {
        self.headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose()))
            .collect()
    }

    // A failure as it is: the URL is in the error already, and a plain web server has no
    // codes to read, so only TLS and plain HTTP get a hint.
    fn fail(&self, failure: Failure) -> Error {
        let hint = match failure {
            Failure::Tls(_) => Some(HINT_TLS),
            Failure::PlainHttp(_) => Some(PLAIN_HTTP_HINT),
            _ => None,
        };
        let url = redact_url(&self.url);
        failed("download", &url, (failure.to_string(), hint))
    }
}

impl Source for WebSource {
    fn list(&self, _prefix: &str) -> Result<Vec<Object>, Error> {
        let mut headers = self.headers();
        headers.push(("Range", "bytes=0-0"));
        let response =
            http::get_with_retry(&self.agent, &self.url, &headers).map_err(|f| self.fail(f))?;
        let header = |name| http::header(&response, name).map(str::to_string);
        // A server without ETags usually sends Last-Modified: the object's version either way.
        let etag = header("etag").or_else(|| header("last-modified").map(|d| format!("lm:{d}")));
        let (size, ranges) = match response.status().as_u16() {
            206 | 416 => match header("content-range")
                .as_deref()
                .and_then(http::content_range)
            {
                Some((_, Some(total))) => (Some(total), true),
                _ => (None, false),
            },
            200 => (
                header("content-length").and_then(|v| v.trim().parse().ok()),
                false,
            ),
            _ => return Err(self.fail(Failure::Status(StatusError::read(response)))),
        };
        log::debug!("{}: size {size:?}, ranges {ranges}", redact_url(&self.url));
        Ok(vec![Object {
            key: self.name.clone(),
            size,
            etag,
            ranges,
            md5: None,
            sha256: None,
        }])
    }

    fn read(
        &self,
        _key: &str,
        range: Option<Range<u64>>,
        out: &mut dyn Write,
    ) -> Result<(), Error> {
        let owned = |(k, v): (&str, &str)| (k.to_string(), v.to_string());
        let headers = |_: Option<&str>| Ok(self.headers().into_iter().map(owned).collect());
        http::get_resumable(&self.agent, &self.url, &headers, range, out).map_err(|f| self.fail(f))
    }
}

/// The file name a URL names: its last path segment, percent-decoded.
pub(crate) fn file_name(uri: &str) -> Result<String, String> {
    let rest = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let path = rest.split(['?', '#']).next().unwrap_or_default();
    let last = match path.find('/') {
        Some(i) => path[i..].rsplit('/').next().unwrap_or_default(),
        None => "",
    };
    if last.is_empty() {
        return Err("the URL names no file (its path must end with a file name)".into());
    }
    let name = percent_decode(last)?;
    if name.contains('/') {
        return Err(format!("the file name {} contains a '/'", quote(&name)));
    }
    safe_relative(&name).map_err(|r| format!("the file name {} is refused: {r}", quote(&name)))?;
    Ok(name)
}

// `{"Name": "value", ...}`; the values are never shown, they may be credentials.
fn parse_headers(json: &Secret) -> Result<Vec<(String, Secret)>, String> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json.expose())
        .map_err(|_| {
            "not a JSON object (its value is not shown: it may hold a secret)".to_string()
        })?;
    map.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, Secret::new(s))),
            _ => Err(format!("the value of header {} is not a string", quote(&k))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_must_be_an_object_of_strings_and_stay_hidden() {
        let ok = parse_headers(&Secret::new(r#"{"Authorization":"Bearer t"}"#)).unwrap();
        assert_eq!(ok[0].0, "Authorization");
        assert_eq!(ok[0].1.expose(), "Bearer t");
        let err = parse_headers(&Secret::new(r#"{"Authorization": "Bearer s3cr3t""#)).unwrap_err();
        assert!(!err.contains("s3cr3t"), "{err}");
        let err = parse_headers(&Secret::new(r#"{"X-N": 1}"#)).unwrap_err();
        assert_eq!(err, "the value of header 'X-N' is not a string");
    }

    #[test]
    fn file_names() {
        assert_eq!(file_name("https://h/models/m.onnx").unwrap(), "m.onnx");
        assert_eq!(
            file_name("http://h:8080/a/my%20model.bin?sig=x#f").unwrap(),
            "my model.bin"
        );
        assert!(file_name("https://h/models/").is_err());
        assert!(file_name("https://h").is_err());
        assert!(file_name("https://h/a/..").is_err());
        assert!(file_name("https://h/a/%2E%2E").is_err());
        assert!(file_name("https://h/a/x%2Fy").is_err());
    }
}
