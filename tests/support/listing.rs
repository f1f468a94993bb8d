//! A hostile listing no real store can be made to send: pages in S3's, GCS's or Azure's format
//! whose tokens alternate (A, B, A, ...), never end, or end after a given number of pages.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::server::{Server, read_head};

/// Pages the stub serves before it answers 400 to everything: a client caught in a loop fails
/// the test instead of hanging it.
pub const GIVE_UP: usize = 2_000;

/// The page format, and the URI and environment that list through it.
#[derive(Clone, Copy, Debug)]
pub enum Store {
    S3,
    Gcs,
    Azure,
}

/// What the next-page token of each page is.
#[derive(Clone, Copy, Debug)]
pub enum Tokens {
    /// `A`, then `B`, then `A` again: a loop of two pages.
    Alternating,
    /// A fresh token on every page, forever.
    Endless,
    /// This many pages, then none.
    Pages(usize),
}

/// The stub, serving `keys` keys a page under the prefix `m/` of bucket or container `b`;
/// GETs of objects are answered 404. Stops when dropped.
pub struct Listing {
    server: Server,
    store: Store,
    pages: Arc<AtomicUsize>,
}

impl Listing {
    pub fn start(store: Store, tokens: Tokens, keys: usize) -> Listing {
        Listing::launch(store, tokens, keys, false)
    }

    /// The same, the first key a `..` one that the plan refuses: a run ends after the listing.
    pub fn poisoned(store: Store, tokens: Tokens, keys: usize) -> Listing {
        Listing::launch(store, tokens, keys, true)
    }

    fn launch(store: Store, tokens: Tokens, keys: usize, poison: bool) -> Listing {
        let pages = Arc::new(AtomicUsize::new(0));
        let served = pages.clone();
        let server = Server::start("127.0.0.1:0", move |stream| {
            let mut stream = stream;
            // Keep-alive: the client reuses the connection for the next page.
            while let Some((_, target, _)) = read_head(&stream) {
                let listing = match store {
                    Store::S3 => target.contains("list-type=2"),
                    Store::Gcs => target.contains("/o?"),
                    Store::Azure => target.contains("comp=list"),
                };
                if !listing {
                    let _ = stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    return;
                }
                let n = served.fetch_add(1, Ordering::SeqCst);
                if n >= GIVE_UP {
                    // A client that never stops: end the test rather than loop with it.
                    let _ = stream.write_all(
                        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    return;
                }
                let next = match tokens {
                    Tokens::Alternating => {
                        Some(if n.is_multiple_of(2) { "A" } else { "B" }.to_string())
                    }
                    Tokens::Endless => Some(format!("t{n}")),
                    Tokens::Pages(total) => (n + 1 < total).then(|| format!("t{n}")),
                };
                let mut names: Vec<String> =
                    (0..keys).map(|i| format!("m/{n:06}/{i:05}.bin")).collect();
                if poison && n == 0 && keys > 0 {
                    // Refused by the plan at once: the run ends after the listing.
                    names[0] = "m/../escaped.bin".into();
                }
                let body = page(store, &names, next.as_deref());
                // One write: a head and a body in two would wait on Nagle and delayed ACKs.
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n{body}",
                    body.len()
                );
                if stream.write_all(answer.as_bytes()).is_err() {
                    return;
                }
            }
        });
        Listing {
            server,
            store,
            pages,
        }
    }

    /// The URI of the prefix `m/`.
    pub fn uri(&self) -> &'static str {
        match self.store {
            Store::S3 => "s3://b/m/",
            Store::Gcs => "gs://b/m/",
            Store::Azure => "https://acct.blob.core.windows.net/b/m/",
        }
    }

    /// The environment that sends the binary to the stub, without credentials.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let addr = self.server.addr();
        match self.store {
            Store::S3 => vec![
                ("AWS_ENDPOINT_URL", format!("http://{addr}")),
                ("awsAnonymousCredential", "true".into()),
            ],
            Store::Gcs => vec![("STORAGE_EMULATOR_HOST", format!("http://{addr}"))],
            Store::Azure => vec![("AZURE_STORAGE_BLOB_ENDPOINT", format!("http://{addr}/acct"))],
        }
    }

    /// How many pages were served.
    pub fn pages(&self) -> usize {
        self.pages.load(Ordering::SeqCst)
    }
}

// One page with `names` (10 bytes each, with an MD5) and the token `next`.
fn page(store: Store, names: &[String], next: Option<&str>) -> String {
    let mut out = String::with_capacity(names.len() * 200);
    match store {
        Store::S3 => {
            out.push_str("<ListBucketResult>");
            out.push_str(&format!("<IsTruncated>{}</IsTruncated>", next.is_some()));
            for name in names {
                out.push_str(&format!(
                    "<Contents><Key>{name}</Key><Size>10</Size><ETag>\"0123456789abcdef0123456789abcdef\"</ETag></Contents>"
                ));
            }
            if let Some(next) = next {
                out.push_str(&format!(
                    "<NextContinuationToken>{next}</NextContinuationToken>"
                ));
            }
            out.push_str("</ListBucketResult>");
        }
        Store::Gcs => {
            let items: Vec<String> = names
                .iter()
                .map(|n| {
                    format!(r#"{{"name":"{n}","size":"10","md5Hash":"ASNFZ4mrze8BI0VniavN7w=="}}"#)
                })
                .collect();
            out.push_str(&format!(r#"{{"items":[{}]"#, items.join(",")));
            if let Some(next) = next {
                out.push_str(&format!(r#","nextPageToken":"{next}""#));
            }
            out.push('}');
        }
        Store::Azure => {
            out.push_str("<EnumerationResults><Blobs>");
            for name in names {
                out.push_str(&format!(
                    "<Blob><Name>{name}</Name><Properties><Content-Length>10</Content-Length><Content-MD5>ASNFZ4mrze8BI0VniavN7w==</Content-MD5><Etag>0x8DC0FFEE</Etag></Properties></Blob>"
                ));
            }
            out.push_str("</Blobs>");
            out.push_str(&format!("<NextMarker>{}</NextMarker>", next.unwrap_or("")));
            out.push_str("</EnumerationResults>");
        }
    }
    out
}
