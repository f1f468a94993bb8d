//! `http(s)://` downloads by the real binary against a file server on 127.0.0.1: what lands in
//! DEST_DIR, what the server was asked, and the exact last stderr line on failure.

use std::collections::HashMap;
use std::path::Path;

use crate::support::proxy::Proxy;
use crate::support::server::PlainHttp;
use crate::support::web::{Behaviour, Web};
use crate::support::{TempDir, bytes, closed_port, run, run_bounded, tls};

/// A folder with the files to serve, and one to download into.
struct Site {
    tmp: TempDir,
}

impl Site {
    fn new(files: &[(&str, &[u8])]) -> Site {
        let tmp = TempDir::new("http");
        for (name, data) in files {
            let path = tmp.path().join("www").join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, data).unwrap();
        }
        Site { tmp }
    }

    fn www(&self) -> std::path::PathBuf {
        self.tmp.path().join("www")
    }

    fn dest(&self) -> std::path::PathBuf {
        self.tmp.path().join("dest")
    }

    fn dest_str(&self) -> String {
        self.dest().to_str().unwrap().to_string()
    }
}

/// Every name in `dir` (hidden ones too), sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn ranges_asked(web: &Web) -> Vec<Option<String>> {
    web.seen()
        .into_iter()
        .map(|s| s.headers.get("range").cloned())
        .collect()
}

#[test]
fn a_file_lands_under_the_last_path_segment() {
    let data = bytes(300_000, 1);
    let site = Site::new(&[("models/iris/model.onnx", &data)]);
    let web = Web::start(&site.www(), Behaviour::default());
    let uri = format!("{}/models/iris/model.onnx?download=1", web.url());
    let out = run(&[&uri, &site.dest_str()], &[]);
    out.expect_code(0);
    assert_eq!(names(&site.dest()), vec![".mrsi-manifest", "model.onnx"]);
    assert_eq!(std::fs::read(site.dest().join("model.onnx")).unwrap(), data);
    // One ranged probe, then the file in one plain GET (it is smaller than a part).
    assert_eq!(ranges_asked(&web), vec![Some("bytes=0-0".into()), None]);
    assert!(
        out.stderr
            .contains("info: downloaded 1 file(s), 300000 bytes (293.0 KiB) in "),
        "{out:#?}"
    );
    // The query string can be a credential: never logged.
    assert!(!out.stderr.contains("download=1"), "{out:#?}");
}

#[test]
fn a_missing_file_is_a_clear_404_and_writes_nothing() {
    let site = Site::new(&[]);
    let web = Web::start(&site.www(), Behaviour::default());
    let uri = format!("{}/models/missing.bin", web.url());
    let out = run(&[&uri, &site.dest_str()], &[]);
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!("error: cannot download {uri}: HTTP 404 Not Found")
    );
    // A 404 is an answer, not a failure to retry.
    assert_eq!(web.seen().len(), 1);
    assert!(names(&site.dest()).is_empty());
}

#[test]
fn redirects_are_followed_and_the_name_comes_from_the_uri_asked() {
    let data = bytes(5000, 2);
    let site = Site::new(&[("store/v7/blob", &data)]);
    let mut behaviour = Behaviour::default();
    behaviour
        .redirects
        .insert("/latest/model.bin".into(), "/store/v7/blob".into());
    let web = Web::start(&site.www(), behaviour);
    let uri = format!("{}/latest/model.bin", web.url());
    run(&[&uri, &site.dest_str()], &[]).expect_code(0);
    assert_eq!(std::fs::read(site.dest().join("model.bin")).unwrap(), data);
    let paths: Vec<String> = web.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(
        paths,
        vec![
            "/latest/model.bin",
            "/store/v7/blob",
            "/latest/model.bin",
            "/store/v7/blob"
        ]
    );
}

#[test]
fn a_redirect_to_a_metadata_address_is_refused() {
    let site = Site::new(&[]);
    let mut behaviour = Behaviour::default();
    behaviour.redirects.insert(
        "/model.bin".into(),
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/".into(),
    );
    let web = Web::start(&site.www(), behaviour);
    let uri = format!("{}/model.bin", web.url());
    let out = run(&[&uri, &site.dest_str()], &[]);
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: cannot download {uri}: refusing a redirect to 169.254.169.254: it is a link-local or cloud metadata address"
        )
    );
}

#[test]
fn no_content_length_and_no_ranges_is_one_stream() {
    let data = bytes(40 << 20, 3);
    let site = Site::new(&[("big.bin", &data)]);
    let web = Web::start(
        &site.www(),
        Behaviour {
            ranges: false,
            content_length: false,
            ..Behaviour::default()
        },
    );
    let uri = format!("{}/big.bin", web.url());
    run(&[&uri, &site.dest_str()], &[]).expect_code(0);
    assert_eq!(std::fs::read(site.dest().join("big.bin")).unwrap(), data);
    // The probe's Range was ignored (200), so the file came as one unranged stream.
    assert_eq!(ranges_asked(&web), vec![Some("bytes=0-0".into()), None]);
    assert_eq!(names(&site.dest()), vec![".mrsi-manifest", "big.bin"]);
}

#[test]
fn large_files_come_in_parallel_ranged_parts() {
    let data = bytes((130 << 20) + 123, 4);
    let site = Site::new(&[("big.bin", &data)]);
    let web = Web::start(&site.www(), Behaviour::default());
    let uri = format!("{}/big.bin", web.url());
    run(&["-j", "3", &uri, &site.dest_str()], &[]).expect_code(0);
    assert_eq!(std::fs::read(site.dest().join("big.bin")).unwrap(), data);
    let mut asked: Vec<String> = ranges_asked(&web).into_iter().flatten().collect();
    asked.sort();
    let part = 64u64 << 20;
    let last = data.len() as u64 - 1;
    let mut expected = vec![
        "bytes=0-0".to_string(),
        format!("bytes=0-{}", part - 1),
        format!("bytes={}-{}", part, 2 * part - 1),
        format!("bytes={}-{last}", 2 * part),
    ];
    expected.sort();
    assert_eq!(asked, expected);
}

/// `model.bin` holding `data`, served by a server that cuts every response after 1 MiB.
fn cut_after_1_mib(data: &[u8]) -> (Site, Web) {
    let site = Site::new(&[("model.bin", data)]);
    let web = Web::start(
        &site.www(),
        Behaviour {
            cut_after: Some(1 << 20),
            ..Behaviour::default()
        },
    );
    (site, web)
}

#[test]
fn each_attempt_asks_for_fresh_headers() {
    // S3 signatures expire: a retry must not resend the first attempt's.
    let data = bytes(3 << 20, 6);
    let (_site, web) = cut_after_1_mib(&data);
    let agent = mr_storage_initializer::agent(
        &mr_storage_initializer::TlsSettings::default(),
        mr_storage_initializer::Trust::Usual(&[]),
    )
    .unwrap();
    let calls = std::cell::Cell::new(0);
    let headers = |_: Option<&str>| {
        calls.set(calls.get() + 1);
        Ok(vec![("X-Attempt".to_string(), calls.get().to_string())])
    };
    let mut out = Vec::new();
    let url = format!("{}/model.bin", web.url());
    mr_storage_initializer::get_resumable(&agent, &url, &headers, None, &mut out).unwrap();
    assert!(out == data, "the bytes differ");
    let attempts: Vec<Option<String>> = web
        .seen()
        .into_iter()
        .map(|s| s.headers.get("x-attempt").cloned())
        .collect();
    assert_eq!(attempts, vec![Some("1".into()), Some("2".into())]);
}

#[test]
fn a_cut_connection_resumes_from_the_bytes_written() {
    let data = bytes(3 << 20, 5);
    let (site, web) = cut_after_1_mib(&data);
    let uri = format!("{}/model.bin", web.url());
    let out = run(&[&uri, &site.dest_str()], &[]);
    out.expect_code(0);
    assert_eq!(std::fs::read(site.dest().join("model.bin")).unwrap(), data);
    // A plain GET, cut; the retry asks for the rest.
    assert_eq!(
        ranges_asked(&web),
        vec![
            Some("bytes=0-0".into()),
            None,
            Some("bytes=1048576-".into()),
        ]
    );
    assert!(
        out.stderr.contains("retrying from byte 1048576"),
        "{out:#?}"
    );
}

#[test]
fn a_cut_connection_without_range_support_skips_what_was_written() {
    let data = bytes(3 << 20, 6);
    let site = Site::new(&[("model.bin", &data)]);
    let web = Web::start(
        &site.www(),
        Behaviour {
            ranges: false,
            cut_after: Some(1 << 20),
            ..Behaviour::default()
        },
    );
    let uri = format!("{}/model.bin", web.url());
    run(&[&uri, &site.dest_str()], &[]).expect_code(0);
    assert_eq!(std::fs::read(site.dest().join("model.bin")).unwrap(), data);
    assert_eq!(web.seen().len(), 3);
}

#[test]
fn https_with_a_ca_made_at_test_time() {
    let data = bytes(70_000, 7);
    let site = Site::new(&[("model.bin", &data)]);
    let web = Web::start(&site.www(), Behaviour::default());
    let certs = tls::make_certs(site.tmp.path());
    let proxy = tls::TlsProxy::start(&certs, web.port());
    let uri = format!("https://127.0.0.1:{}/model.bin", proxy.port);

    // Not trusted: one clear line, a hint, and no retries.
    let out = run(&[&uri, &site.dest_str()], &[]);
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!("error: cannot download {uri}: invalid peer certificate: UnknownIssuer")
    );
    assert!(
        out.stderr
            .contains("hint: trust the server's CA with SSL_CERT_FILE"),
        "{out:#?}"
    );
    assert!(web.seen().is_empty());
    assert!(names(&site.dest()).is_empty());

    // Trusted through SSL_CERT_FILE.
    let ca = certs.ca.to_str().unwrap();
    run(&[&uri, &site.dest_str()], &[("SSL_CERT_FILE", ca)]).expect_code(0);
    assert_eq!(std::fs::read(site.dest().join("model.bin")).unwrap(), data);

    // Trusted through KServe's CA bundle: <mount point>/cabundle.crt.
    let mount = site.tmp.path().join("custom-certs");
    std::fs::create_dir_all(&mount).unwrap();
    std::fs::copy(&certs.ca, mount.join("cabundle.crt")).unwrap();
    let dest = site.tmp.path().join("kserve-ca");
    run(
        &[&uri, dest.to_str().unwrap()],
        &[
            ("CA_BUNDLE_CONFIGMAP_NAME", "odh-trusted-ca-bundle"),
            ("CA_BUNDLE_VOLUME_MOUNT_POINT", mount.to_str().unwrap()),
        ],
    )
    .expect_code(0);
    assert_eq!(std::fs::read(dest.join("model.bin")).unwrap(), data);
}

#[test]
fn host_headers_are_sent_and_never_logged() {
    let site = Site::new(&[("model.bin", b"weights")]);
    let web = Web::start(&site.www(), Behaviour::default());
    let uri = format!("{}/model.bin", web.url());
    let out = run(
        &[&uri, &site.dest_str()],
        &[
            (
                "127.0.0.1-headers",
                r#"{"Authorization": "Bearer s3cr3t-header", "X-Team": "a"}"#,
            ),
            ("RUST_LOG", "trace"),
        ],
    );
    out.expect_code(0);
    for seen in web.seen() {
        let h: &HashMap<String, String> = &seen.headers;
        assert_eq!(
            h.get("authorization").map(String::as_str),
            Some("Bearer s3cr3t-header")
        );
        assert_eq!(h.get("x-team").map(String::as_str), Some("a"));
    }
    assert!(!out.stderr.contains("s3cr3t"), "{out:#?}");

    // Not a JSON object: the variable is named, its value is not shown.
    let out = run(
        &[&uri, &site.dest_str()],
        &[("127.0.0.1-headers", "Authorization: Bearer s3cr3t")],
    );
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        "error: invalid value in 127.0.0.1-headers: not a JSON object (its value is not shown: it may hold a secret)"
    );
}

#[test]
fn proxies_are_used_unless_no_proxy_says_otherwise() {
    let site = Site::new(&[("model.bin", b"through the proxy")]);
    let web = Web::start(&site.www(), Behaviour::default());
    let proxy = Proxy::start();
    let uri = format!("{}/model.bin", web.url());
    let authority = uri.split('/').nth(2).unwrap().to_string();
    for var in ["HTTP_PROXY", "HTTPS_PROXY"] {
        let dest = site.tmp.path().join(var);
        run(
            &[&uri, dest.to_str().unwrap()],
            &[(var, &proxy.url()), ("NO_PROXY", "")],
        )
        .expect_code(0);
        assert_eq!(
            std::fs::read(dest.join("model.bin")).unwrap(),
            b"through the proxy"
        );
    }
    // Two requests (probe and download) per run, each through the proxy.
    assert_eq!(proxy.targets(), vec![format!("CONNECT {authority}"); 4]);

    // NO_PROXY naming the host: straight there.
    let dest = site.tmp.path().join("direct");
    run(
        &[&uri, dest.to_str().unwrap()],
        &[("HTTPS_PROXY", &proxy.url()), ("NO_PROXY", "127.0.0.1")],
    )
    .expect_code(0);
    assert_eq!(proxy.targets().len(), 4);
    assert_eq!(web.seen().len(), 6);
}

/// `ALL_PROXY` is used too, as `--help` says (ureq takes the first of ALL_PROXY, HTTPS_PROXY
/// and HTTP_PROXY that is set).
#[test]
fn all_proxy_is_used() {
    let site = Site::new(&[("model.bin", b"through the proxy")]);
    let web = Web::start(&site.www(), Behaviour::default());
    let proxy = Proxy::start();
    let uri = format!("{}/model.bin", web.url());
    run(
        &[&uri, &site.dest_str()],
        &[("ALL_PROXY", &proxy.url()), ("NO_PROXY", "")],
    )
    .expect_code(0);
    assert_eq!(
        std::fs::read(site.dest().join("model.bin")).unwrap(),
        b"through the proxy"
    );
    assert_eq!(proxy.targets().len(), 2);
}

/// The shared HTTP stack says it for downloads as it does for the registry: an `https://` URL
/// on a plain-HTTP server is named as such, with a hint, and is not retried.
#[test]
fn https_url_on_a_plain_http_server() {
    let site = Site::new(&[]);
    let server = PlainHttp::start(false);
    let uri = format!("https://{}/model.bin", server.authority());
    let out = run(&[&uri, &site.dest_str()], &[]);
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: cannot download {uri}: TLS handshake failed: is the server plain HTTP? (unexpected end of file; http://{}/ answers without TLS)",
            server.authority()
        )
    );
    assert!(
        out.stderr
            .contains("hint: the server answers plain HTTP: use an http:// URL"),
        "{out:#?}"
    );
    assert!(!out.stderr.contains("attempt 1 of"), "{out:#?}");
    assert_eq!(server.hellos(), 1);
    assert_eq!(server.requests(), ["GET /"]);
    assert!(names(&site.dest()).is_empty());
}

/// A DEST_DIR that is a file, or below one, is named as such rather than "File exists".
#[test]
fn a_dest_dir_that_is_a_file() {
    let site = Site::new(&[("model.bin", b"weights")]);
    let web = Web::start(&site.www(), Behaviour::default());
    let uri = format!("{}/model.bin", web.url());
    let file = site.tmp.path().join("not-a-folder");
    std::fs::write(&file, b"already here").unwrap();

    let out = run(&[&uri, file.to_str().unwrap()], &[]);
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: DEST_DIR '{}' is a file, not a folder",
            file.display()
        )
    );

    let below = file.join("models/iris");
    let out = run(&[&uri, below.to_str().unwrap()], &[]);
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: DEST_DIR '{}' cannot be created: '{}' is a file, not a folder",
            below.display(),
            file.display()
        )
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"already here");
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let site = Site::new(&[("model.bin", b"12345")]);
    let web = Web::start(&site.www(), Behaviour::default());
    let uri = format!("{}/model.bin", web.url());
    let out = run(&["--dry-run", &uri, &site.dest_str()], &[]);
    out.expect_code(0);
    assert_eq!(
        out.stdout,
        format!("5\t{}\n", site.dest().join("model.bin").display())
    );
    assert!(!site.dest().exists());
    assert_eq!(ranges_asked(&web), vec![Some("bytes=0-0".into())]);
}

#[test]
fn a_rerun_skips_a_complete_file() {
    let site = Site::new(&[("model.bin", b"12345")]);
    let web = Web::start(&site.www(), Behaviour::default());
    let uri = format!("{}/model.bin", web.url());
    run(&[&uri, &site.dest_str()], &[]).expect_code(0);
    let out = run(&[&uri, &site.dest_str()], &[]);
    out.expect_code(0);
    assert!(
        out.stderr.contains("1 file(s) already complete"),
        "{out:#?}"
    );
    // Two probes and one download in all.
    assert_eq!(web.seen().len(), 3);
}

/// Retrained weights are usually the same size: a rerun after the server's file changed
/// (new ETag) downloads the new bytes, whatever the sizes say; one with nothing changed skips.
#[test]
fn a_rerun_fetches_a_changed_file_of_the_same_size() {
    let site = Site::new(&[("model.bin", b"old weights")]);
    let web = Web::start(&site.www(), Behaviour::default());
    let uri = format!("{}/model.bin", web.url());
    run(&[&uri, &site.dest_str()], &[]).expect_code(0);
    // A new file under the same name: another inode and mtime, so another ETag.
    let new = site.www().join("model.bin.new");
    std::fs::write(&new, b"new weights").unwrap();
    std::fs::rename(&new, site.www().join("model.bin")).unwrap();
    let out = run(&[&uri, &site.dest_str()], &[]);
    out.expect_code(0);
    assert_eq!(
        std::fs::read(site.dest().join("model.bin")).unwrap(),
        b"new weights"
    );
    assert!(!out.stderr.contains("already complete"), "{out:#?}");
    let out = run(&[&uri, &site.dest_str()], &[]);
    assert!(
        out.stderr.contains("1 file(s) already complete"),
        "{out:#?}"
    );
}

/// A server that gives no ETag and no Last-Modified cannot say a file is the same: a rerun
/// downloads it again.
#[test]
fn a_rerun_without_a_version_downloads_again() {
    let site = Site::new(&[("model.bin", b"12345")]);
    let behaviour = Behaviour {
        ranges: false,
        ..Behaviour::default()
    };
    let web = Web::start(&site.www(), behaviour);
    let uri = format!("{}/model.bin", web.url());
    run(&[&uri, &site.dest_str()], &[]).expect_code(0);
    let out = run(&[&uri, &site.dest_str()], &[]);
    out.expect_code(0);
    assert!(!out.stderr.contains("already complete"), "{out:#?}");
    // Two probes and two downloads.
    assert_eq!(web.seen().len(), 4);
}

/// A server that sends more than the size it listed: the run fails at the listed size, and the
/// temporary file never grows past it (a hostile server cannot fill the disk).
#[test]
fn a_body_longer_than_listed_fails_without_writing_past_the_size() {
    let site = Site::new(&[("model.bin", &bytes(10_000, 3))]);
    let behaviour = Behaviour {
        extra: 8 << 20,
        ..Behaviour::default()
    };
    let web = Web::start(&site.www(), behaviour);
    let uri = format!("{}/model.bin", web.url());
    let out = run(&[&uri, &site.dest_str()], &[]);
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: cannot download 'model.bin' of '{uri}': the source sent more than the 10000 bytes it listed"
        )
    );
    let temp = site.dest().join(".model.bin.mrsi-part");
    let len = std::fs::metadata(&temp).map_or(0, |m| m.len());
    assert!(len <= 10_000, "{len} bytes in {}", temp.display());
    assert!(!site.dest().join("model.bin").exists());
}

/// 256 MiB through the real binary: peak resident memory, as the child reports it, stays
/// under 32 MiB.
#[test]
fn memory_stays_bounded_on_a_256_mib_object() {
    let site = Site::new(&[]);
    std::fs::create_dir_all(site.www()).unwrap();
    let chunk = bytes(1 << 20, 8);
    {
        use std::io::Write;
        let mut f = std::fs::File::create(site.www().join("huge.bin")).unwrap();
        for _ in 0..256 {
            f.write_all(&chunk).unwrap();
        }
    }
    let web = Web::start(&site.www(), Behaviour::default());
    let uri = format!("{}/huge.bin", web.url());
    let out = run(&[&uri, &site.dest_str()], &[("RUST_LOG", "debug")]);
    out.expect_code(0);
    let len = std::fs::metadata(site.dest().join("huge.bin"))
        .unwrap()
        .len();
    assert_eq!(len, 256 << 20);
    let kib: u64 = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("debug: peak memory (VmHWM): "))
        .and_then(|v| v.strip_suffix(" KiB"))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no peak memory line: {out:#?}"));
    assert!(kib < 32 * 1024, "peak RSS {kib} KiB");
    // Progress was reported on the way (at each tenth).
    assert!(
        out.stderr.contains("info: progress: ") && out.stderr.contains("(50%)"),
        "{out:#?}"
    );
}

/// A file fetched in one piece (no ranged parts) counts toward the progress total: the
/// progress lines say "of 976.6 KiB", not "of 0 B". Writes are at most 64 KiB, so at least
/// one lands between a tenth and nine tenths and a line is logged whatever the timing.
#[test]
fn progress_counts_a_file_fetched_in_one_piece() {
    let data = bytes(1_000_000, 9);
    let site = Site::new(&[("model.bin", &data)]);
    let web = Web::start(&site.www(), Behaviour::default());
    let uri = format!("{}/model.bin", web.url());
    let out = run(&[&uri, &site.dest_str()], &[]);
    out.expect_code(0);
    assert_eq!(ranges_asked(&web), vec![Some("bytes=0-0".into()), None]);
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("info: progress: "))
        .collect();
    assert!(!lines.is_empty(), "no progress line: {out:#?}");
    for line in lines {
        assert!(line.contains(" of 976.6 KiB ("), "{line}");
    }
}

#[test]
fn a_password_in_a_url_never_reaches_the_log() {
    let tmp = TempDir::new("http-password");
    let url = format!("http://u:pw5ecret@127.0.0.1:{}/m/model.bin", closed_port());
    let out = run(&[&url, tmp.path().join("d").to_str().unwrap()], &[]);
    out.expect_code(1);
    assert!(!out.stderr.contains("pw5ecret"), "{}", out.stderr);
    let shown = url.replace("pw5ecret", "<redacted>");
    assert!(
        out.last_line()
            .starts_with(&format!("error: cannot download {shown}: ")),
        "{}",
        out.stderr
    );
}

// Limits small enough for a test: a transfer slower than 1 KiB/s for 2 s is abandoned.
const SLOW: [(&str, &str); 2] = [
    ("MRSI_LOW_SPEED_TIME", "2"),
    ("MRSI_LOW_SPEED_LIMIT", "1024"),
];
// A run that used to go on forever is stopped after this.
const BOUND: std::time::Duration = std::time::Duration::from_secs(90);

#[test]
fn a_trickling_server_is_abandoned_after_a_few_attempts() {
    // One byte every 300 ms never trips the read timeout: only the low-speed limit ends it.
    let site = Site::new(&[("model.bin", &bytes(64 << 10, 21))]);
    let behaviour = Behaviour {
        trickle: Some(std::time::Duration::from_millis(300)),
        ..Behaviour::default()
    };
    let web = Web::start(&site.www(), behaviour);
    let uri = format!("{}/model.bin", web.url());
    let out = run_bounded(&[&uri, &site.dest_str()], &SLOW, BOUND);
    assert_eq!(
        out.last_line(),
        format!(
            "error: cannot download {uri}: the server sent less than 1024 bytes/s for 2 s (MRSI_LOW_SPEED_LIMIT, MRSI_LOW_SPEED_TIME) (after 4 attempts)"
        ),
        "{out:#?}"
    );
    out.expect_code(1);
    let gets = web.seen().len();
    assert!(gets <= 5, "{gets} requests: {:?}", ranges_asked(&web));
}

#[test]
fn a_byte_per_connection_does_not_start_the_retries_over() {
    let site = Site::new(&[("model.bin", &bytes(64 << 10, 22))]);
    let behaviour = Behaviour {
        bytes_per_connection: Some(1),
        ..Behaviour::default()
    };
    let web = Web::start(&site.www(), behaviour);
    let uri = format!("{}/model.bin", web.url());
    let out = run_bounded(&[&uri, &site.dest_str()], &SLOW, BOUND);
    assert_eq!(
        out.last_line(),
        format!("error: cannot download {uri}: Peer disconnected (after 4 attempts)"),
        "{out:#?}"
    );
    out.expect_code(1);
    let gets = web.seen().len();
    assert!(gets <= 5, "{gets} requests: {:?}", ranges_asked(&web));
}

#[test]
fn a_registry_that_trickles_its_answer_ends_at_the_deadline() {
    let json = format!(r#"{{"id":"1","name":"iris"{}}}"#, " ".repeat(4096));
    let site = Site::new(&[(
        "api/model_registry/v1alpha3/registered_model",
        json.as_bytes(),
    )]);
    let behaviour = Behaviour {
        trickle: Some(std::time::Duration::from_millis(300)),
        ..Behaviour::default()
    };
    let web = Web::start(&site.www(), behaviour);
    let uri = format!("model-registry://127.0.0.1:{}/iris/v1", web.port());
    let out = run_bounded(
        &["--resolve", &uri],
        &[("MRSI_REGISTRY_TIMEOUT", "2")],
        BOUND,
    );
    assert_eq!(
        out.last_line(),
        format!(
            "error: cannot resolve model 'iris' version 'v1' in model registry {}: registry unreachable: GET {}/api/model_registry/v1alpha3/registered_model?name=iris: reading the response: no complete answer within 2 s (MRSI_REGISTRY_TIMEOUT)",
            web.url(),
            web.url()
        ),
        "{out:#?}"
    );
    out.expect_code(1);
}

#[test]
fn numeric_spellings_are_checked_where_they_resolve() {
    // 127.0.0.0/8 stands in for the metadata range: refused by the variable, every spelling
    // of it must be refused before any connection is made.
    let site = Site::new(&[("model.bin", b"secret")]);
    let web = Web::start(&site.www(), Behaviour::default());
    for host in ["0x7f.1", "0177.0.0.1", "127.1", "2130706433"] {
        let uri = format!("http://{host}:{}/model.bin", web.port());
        let out = run_bounded(
            &[&uri, &site.dest_str()],
            &[("MRSI_REFUSE_ADDRESSES", "127.0.0.0/8")],
            BOUND,
        );
        assert_eq!(
            out.last_line(),
            format!(
                "error: cannot download {uri}: refusing to connect to 127.0.0.1: MRSI_REFUSE_ADDRESSES refuses it"
            ),
            "{out:#?}"
        );
        out.expect_code(1);
    }
    assert_eq!(web.seen().len(), 0, "{:?}", web.seen());
    assert!(!site.dest().join("model.bin").exists());
}

/// Runs the binary with `args` until `ready` says so (polled for at most 20 s), then sends it
/// `signal` (as the kubelet stops a pod) and returns what the run produced.
fn signalled_run(
    args: &[&str],
    env: &[(&str, &str)],
    ready: impl Fn() -> bool,
    signal: &str,
) -> crate::support::Run {
    use std::io::Read;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let mut child = Command::new(env!("CARGO_BIN_EXE_mr-storage-initializer"))
        .env_clear()
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("RUST_BACKTRACE", "0")
        .envs(env.iter().copied())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mr-storage-initializer");
    let mut err = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let mut is_ready = false;
    while start.elapsed() < Duration::from_secs(20) && child.try_wait().unwrap().is_none() {
        if ready() {
            is_ready = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if is_ready {
        let pid = child.id().to_string();
        let sent = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(sent.success(), "kill {signal} {pid}");
    }
    let start = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            break -1;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = stderr.join().unwrap();
    assert!(is_ready, "not ready to be signalled within 20 s: {stderr}");
    crate::support::Run {
        code,
        stdout: String::new(),
        stderr,
    }
}

#[test]
fn a_signal_stops_the_run_with_its_own_line_and_leaves_it_resumable() {
    // Two ranged parts (64 MiB and 1 MiB) from a server that sends 64 KiB every 50 ms: the
    // small part is journalled within a second, the large one would take a minute.
    let data = bytes((65 << 20) + 7, 9);
    let site = Site::new(&[("big.bin", &data)]);
    let temp = site.dest().join(".big.bin.mrsi-part");
    for (signal, code) in [("-TERM", 143), ("-INT", 130)] {
        let web = Web::start(
            &site.www(),
            Behaviour {
                pace: Some(std::time::Duration::from_millis(50)),
                ..Behaviour::default()
            },
        );
        let uri = format!("{}/big.bin", web.url());
        // The 1 MiB part is done once the journal holds a line after its header. The second
        // run finds the first run's journal at once: it is ready only once it has asked this
        // server for bytes too (so it is past start-up, where the signal handlers are set).
        let journal = site.dest().join(".big.bin.mrsi-parts");
        let journalled = || {
            let lines = std::fs::read_to_string(&journal).unwrap_or_default();
            lines.lines().count() >= 2 && web.seen().len() >= 2
        };
        let out = signalled_run(
            &[&uri, &site.dest_str()],
            &[("RUST_LOG", "debug")],
            journalled,
            signal,
        );
        assert_eq!(
            out.last_line(),
            format!("error: interrupted by SIG{}", &signal[1..]),
            "{out:#?}"
        );
        out.expect_code(code);
        // The folders are flushed on the way out too (DEST_DIR, where the manifest went).
        assert!(
            out.stderr
                .contains("debug: flushed the 1 folder(s) files went into"),
            "{out:#?}"
        );
        assert!(temp.exists(), "{out:#?}");
        assert!(!site.dest().join("big.bin").exists());
    }
    // A rerun on a fast server fetches only the large part (less than 8 MiB of it came in the
    // runs above, too little for a checkpoint) and completes the file.
    let web = Web::start(&site.www(), Behaviour::default());
    let uri = format!("{}/big.bin", web.url());
    let out = run(&[&uri, &site.dest_str()], &[]);
    out.expect_code(0);
    assert!(
        out.stderr.contains(&format!(
            "{} of {} bytes already on disk",
            data.len() - (64 << 20),
            data.len()
        )),
        "{out:#?}"
    );
    assert_eq!(std::fs::read(site.dest().join("big.bin")).unwrap(), data);
    assert_eq!(names(&site.dest()), vec![".mrsi-manifest", "big.bin"]);
}

#[test]
fn a_rerun_after_sigkill_fetches_at_most_a_checkpoint_per_part_again() {
    // Two ranged parts of 64 MiB, paced (64 KiB per millisecond at most, per connection) so
    // that the client keeps up and little waits in socket buffers. Progress is recorded per
    // 8 MiB flushed to disk: before, a part counted only when all 64 MiB were done, and a
    // rerun after a kill mid-way fetched all 128 MiB again.
    const CHECKPOINT: u64 = 8 << 20;
    let size = 128u64 << 20;
    let data = bytes(size as usize, 12);
    let site = Site::new(&[("big.bin", &data)]);
    let slow = Behaviour {
        pace: Some(std::time::Duration::from_millis(1)),
        ..Behaviour::default()
    };
    let web = Web::start(&site.www(), slow);
    let uri = format!("{}/big.bin", web.url());
    // Killed once the journal holds two ranges after its header: mid-way, whatever the speed.
    let journal = site.dest().join(".big.bin.mrsi-parts");
    let recorded = || {
        let text = std::fs::read_to_string(&journal).unwrap_or_default();
        text.lines().count() >= 3
    };
    let out = signalled_run(&[&uri, &site.dest_str()], &[], recorded, "-KILL");
    assert_eq!(out.code, -1, "{out:#?}");
    let first = web.sent();
    assert!(first < size, "the first run finished: {out:#?}");
    assert!(!site.dest().join("big.bin").exists());

    let web = Web::start(&site.www(), Behaviour::default());
    let uri = format!("{}/big.bin", web.url());
    let out = run(&[&uri, &site.dest_str()], &[]);
    out.expect_code(0);
    assert_eq!(std::fs::read(site.dest().join("big.bin")).unwrap(), data);
    // What the first run never got, plus at most a checkpoint per part in flight (2), plus
    // 1 MiB for what sat in buffers (socket, the reader's 384 KiB) when the kill came.
    let again = web.sent();
    let bound = (size - first) + 2 * CHECKPOINT + (1 << 20);
    assert!(
        again <= bound,
        "the rerun fetched {again} bytes; the first run had been sent {first} of {size}: \
         at most {bound} may be fetched again"
    );
    assert!(out.stderr.contains("bytes already on disk"), "{out:#?}");
}

#[test]
fn a_parted_file_has_its_space_reserved_before_its_bytes_arrive() {
    use std::os::unix::fs::MetadataExt;
    // 128 MiB in two ranged parts, paced so that the run is killed long before the end: the
    // temporary file already holds blocks for all of it (fallocate), where a sparse one
    // would hold only what had arrived.
    let size = 128u64 << 20;
    let site = Site::new(&[("big.bin", &bytes(size as usize, 13))]);
    let slow = Behaviour {
        pace: Some(std::time::Duration::from_millis(5)),
        ..Behaviour::default()
    };
    let web = Web::start(&site.www(), slow);
    let uri = format!("{}/big.bin", web.url());
    let temp = site.dest().join(".big.bin.mrsi-part");
    let journal = site.dest().join(".big.bin.mrsi-parts");
    let started = || web.sent() > 0 && journal.exists();
    let out = signalled_run(&[&uri, &site.dest_str()], &[], started, "-KILL");
    assert_eq!(out.code, -1, "{out:#?}");
    let meta = std::fs::metadata(&temp).unwrap();
    assert!(
        web.sent() < size,
        "the run finished before the kill: {out:#?}"
    );
    assert_eq!(meta.len(), size);
    assert!(
        meta.blocks() * 512 >= size,
        "{} of {size} bytes reserved after {} arrived",
        meta.blocks() * 512,
        web.sent()
    );
}

#[test]
fn a_file_larger_than_the_free_space_fails_before_its_first_byte() {
    use std::os::unix::fs::MetadataExt;
    // The server lists an object twice the size of the whole disk DEST_DIR is on: the run
    // fails at the plan, with the disk's own words, having asked for no byte of it and
    // taken no block.
    let dest = TempDir::new("too-large");
    let fs = rustix::fs::statvfs(dest.path()).unwrap();
    // Capped below where the plan's part count (2^32 parts) would refuse it first.
    let huge = (fs.f_blocks.saturating_mul(fs.f_frsize))
        .saturating_mul(2)
        .min(1 << 50);
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let server = {
        let asked = asked.clone();
        crate::support::server::Server::start("127.0.0.1:0", move |stream| {
            use std::io::Write;
            let Some((method, _, headers, _)) = crate::support::server::read_request(&stream)
            else {
                return;
            };
            let range = headers.get("range").cloned();
            asked.lock().unwrap().push(format!("{method} {range:?}"));
            let head = match range.as_deref() {
                Some("bytes=0-0") => format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-0/{huge}\r\n\
                     Content-Length: 1\r\nConnection: close\r\n\r\nx"
                ),
                _ => format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {huge}\r\nAccept-Ranges: bytes\r\n\
                     Connection: close\r\n\r\n"
                ),
            };
            let _ = (&stream).write_all(head.as_bytes());
        })
    };
    let uri = format!("http://{}/big.bin", server.addr());
    let out = run(&[&uri, &dest.path().display().to_string()], &[]);
    assert_ne!(out.code, 0, "{out:#?}");
    let last = out.last_line();
    assert!(
        last.contains("No space left on device") && last.contains(".big.bin.mrsi-part"),
        "{out:#?}"
    );
    let asked = asked.lock().unwrap().clone();
    assert!(
        asked
            .iter()
            .all(|a| a.starts_with("HEAD") || a.ends_with("Some(\"bytes=0-0\")")),
        "data was asked for: {asked:?}"
    );
    assert!(!dest.path().join("big.bin").exists());
    let taken: u64 = std::fs::read_dir(dest.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().blocks())
        .sum();
    assert_eq!(taken, 0, "{:?}", names(dest.path()));
}

#[test]
fn a_plan_that_does_not_fit_gives_back_what_it_reserved() {
    // Two large (sparse) local files: the first fits and is reserved, the second is larger
    // than the disk. The plan fails on the second, and the first one's reserved temporary
    // file goes too: a pod restarting on that error must not hold the disk meanwhile.
    use std::os::unix::fs::MetadataExt;
    let tmp = TempDir::new("plan-too-large");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let fs = rustix::fs::statvfs(tmp.path()).unwrap();
    let huge = (fs.f_blocks.saturating_mul(fs.f_frsize))
        .saturating_mul(2)
        .min(1 << 50);
    for (name, size) in [("a.bin", 80u64 << 20), ("b.bin", huge)] {
        std::fs::File::create(src.join(name))
            .unwrap()
            .set_len(size)
            .unwrap();
    }
    let dest = tmp.path().join("dest");
    let out = run(&[src.to_str().unwrap(), dest.to_str().unwrap()], &[]);
    out.expect_code(1);
    let last = out.last_line();
    assert!(
        last.starts_with("error: cannot allocate")
            && last.contains(".b.bin.mrsi-part")
            && last.contains("No space left on device"),
        "{out:#?}"
    );
    let left: Vec<(String, u64)> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().blocks(),
            )
        })
        .filter(|(name, _)| name != ".mrsi-manifest")
        .collect();
    assert_eq!(left, Vec::<(String, u64)>::new());
}

#[test]
fn a_signal_during_a_blocked_call_still_ends_the_run_with_its_line() {
    // A registry that accepts the connection and never answers: the run is blocked in a read
    // that looks at no flag, and the watchdog ends it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let accepting = {
        let held = held.clone();
        std::thread::spawn(move || {
            if let Ok((stream, _)) = listener.accept() {
                held.lock().unwrap().push(stream);
            }
        })
    };
    let uri = format!("model-registry://127.0.0.1:{port}/iris");
    let connected = || !held.lock().unwrap().is_empty();
    let out = signalled_run(&["--resolve", &uri], &[], connected, "-TERM");
    assert_eq!(out.last_line(), "error: interrupted by SIGTERM", "{out:#?}");
    out.expect_code(143);
    accepting.join().unwrap();
}
