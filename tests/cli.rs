//! The command line as KServe and a person see it: arguments, help, exit codes, and the
//! usage line plus one-line error on stderr.

use crate::support::s3::S3sFs;
use crate::support::server::{Server, read_head};
use crate::support::{TempDir, closed_port, run, run_env};

const USAGE_FIRST_LINE: &str =
    "usage: mr-storage-initializer [OPTIONS] SRC_URI DEST_DIR [SRC_URI DEST_DIR ...]";

#[test]
fn help_goes_to_stdout_and_exits_0() {
    let out = run(&["--help"], &[]);
    out.expect_code(0);
    assert!(out.stdout.contains("USAGE:"), "{out:#?}");
    assert!(out.stdout.contains("MODEL_REGISTRY_BASE_URL"), "{out:#?}");
    assert_eq!(out.stderr, "");
}

/// Every proxy variable ureq reads is listed (.ci/check-kustomize takes the names from here).
#[test]
fn help_lists_the_proxy_variables() {
    let out = run(&["--help"], &[]);
    out.expect_code(0);
    assert!(
        out.stdout
            .contains("\n    ALL_PROXY, HTTPS_PROXY, HTTP_PROXY\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("\n    NO_PROXY                       hosts reached without the proxy\n"),
        "{}",
        out.stdout
    );
}

#[test]
fn version() {
    let out = run(&["-V"], &[]);
    out.expect_code(0);
    assert_eq!(
        out.stdout,
        format!("mr-storage-initializer {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn usage_errors_exit_2_with_the_usage_then_the_error_last() {
    let cases: [(&[&str], &str); 5] = [
        (
            &[],
            "error: expected SRC_URI DEST_DIR pairs, got 0 argument(s)",
        ),
        (
            &["model-registry://iris"],
            "error: expected SRC_URI DEST_DIR pairs, got 1 argument(s)",
        ),
        (
            &["a", "b", "c"],
            "error: expected SRC_URI DEST_DIR pairs, got 3 argument(s)",
        ),
        (&["--nope", "a", "b"], "error: invalid option '--nope'"),
        (
            &["--resolve", "s3://bucket/model"],
            "error: --resolve needs a model-registry://, hf:// or oci:// URI, got 's3://bucket/model'",
        ),
    ];
    for (args, last) in cases {
        let out = run(args, &[]);
        out.expect_code(2);
        assert_eq!(out.stdout, "", "{args:?}");
        assert_eq!(
            out.stderr.lines().next(),
            Some(USAGE_FIRST_LINE),
            "{args:?}"
        );
        assert_eq!(out.last_line(), last, "{args:?}");
    }
}

#[test]
fn a_malformed_uri_is_a_run_time_failure_with_the_reason() {
    let cases = [
        (
            "model-registry://iris/",
            "error: invalid URI 'model-registry://iris/': trailing '/' (an empty model or version name)",
        ),
        (
            "model-registry://",
            "error: invalid URI 'model-registry://': no model name after model-registry://",
        ),
        (
            "model-registry://iris?namespace=a.b",
            "error: invalid URI 'model-registry://iris?namespace=a.b': namespace 'a.b' must match ^[a-zA-Z0-9_-]+$",
        ),
    ];
    for (uri, last) in cases {
        let out = run(&["--resolve", uri], &[]);
        out.expect_code(1);
        assert_eq!(out.last_line(), last, "{uri}");
    }
}

/// A '#' is an error in a model-registry:// URI; the log shows the URI as written, not as if
/// it had a query.
#[test]
fn a_fragment_is_logged_as_written() {
    let out = run(&["model-registry://iris#v1", "/tmp/unused-dest"], &[]);
    out.expect_code(1);
    assert_eq!(
        out.stderr.lines().next(),
        Some("info: model-registry://iris#v1 -> /tmp/unused-dest")
    );
    assert_eq!(
        out.last_line(),
        "error: invalid URI 'model-registry://iris#v1': a '#' is not allowed; write %23 for a '#' inside a name"
    );
}

#[test]
fn an_unsupported_scheme_is_named() {
    let out = run(&["hdfs://namenode/model", "/tmp/unused-dest"], &[]);
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        "error: invalid URI 'hdfs://namenode/model': unsupported storage scheme (supported: model-registry://, s3://, gs://, Azure Blob https://, http(s)://, hf://, oci://, file:// or a path)"
    );
}

#[test]
fn a_bad_environment_value_names_the_variable() {
    let out = run(
        &["--resolve", "model-registry://iris"],
        &[("MODEL_REGISTRY_SCHEME", "grpc")],
    );
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        "error: invalid value in MODEL_REGISTRY_SCHEME: 'grpc' is not http or https"
    );
}

#[test]
fn control_characters_in_a_uri_are_escaped_in_the_error_line() {
    let out = run(&["--resolve", "model-registry://ir\u{1b}]0;x\u{7}is/"], &[]);
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        "error: invalid URI 'model-registry://ir\\u{1b}]0;x\\u{7}is/': trailing '/' (an empty model or version name)"
    );
}

// No control byte but the line ends (and the plan's tab) in the output.
fn assert_no_control_bytes(text: &str) {
    let raw: Vec<char> = text
        .chars()
        .filter(|c| c.is_control() && !matches!(c, '\n' | '\t'))
        .collect();
    assert!(raw.is_empty(), "raw control characters {raw:?} in {text:?}");
}

/// A folder or file name holding ESC, BEL, DEL or a C1 control reaches the log and the dry
/// run's plan escaped, as in the error line: it would otherwise drive the terminal.
#[test]
fn control_characters_in_names_are_escaped_in_the_log_and_the_plan() {
    let tmp = TempDir::new("control-names");
    let src = tmp.path().join("src\u{1b}[31m");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a\u{1b}]0;x\u{7}b\u{7f}\u{9b}"), b"123").unwrap();
    let dest = tmp.path().join("dest");
    let (src, dest) = (src.to_str().unwrap(), dest.to_str().unwrap());
    let shown_src = src.replace('\u{1b}', "\\u{1b}");

    let out = run(&["--dry-run", src, dest], &[("RUST_LOG", "debug")]);
    out.expect_code(0);
    assert_eq!(
        out.stderr.lines().next(),
        Some(format!("info: {shown_src} -> {dest}").as_str())
    );
    assert_eq!(
        out.stdout,
        format!("3\t{dest}/a\\u{{1b}}]0;x\\u{{7}}b\\u{{7f}}\\u{{9b}}\n")
    );
    assert_no_control_bytes(&out.stdout);
    assert_no_control_bytes(&out.stderr);

    let out = run(&[src, dest], &[("RUST_LOG", "debug")]);
    out.expect_code(0);
    assert!(
        out.stderr
            .contains("/a\\u{1b}]0;x\\u{7}b\\u{7f}\\u{9b} (flushed to disk)\n"),
        "{out:#?}"
    );
    assert_no_control_bytes(&out.stdout);
    assert_no_control_bytes(&out.stderr);
}

/// A 100 KB URI gives a last line of a few hundred characters that still says what is wrong:
/// each quoted value is cut at 120 characters, with its whole length.
#[test]
fn a_huge_uri_gives_a_short_error_line() {
    let long = "a".repeat(100 * 1024);
    let cut = "a".repeat(120);
    let s3 = S3sFs::start();
    s3.put("models", "iris/model.bin", b"x");
    let port = closed_port();
    let mut env = s3.env();
    env.push(("MODEL_REGISTRY_BASE_URL", format!("127.0.0.1:{port}")));
    let cases = [
        (
            format!("model-registry://{long}/"),
            format!(
                "error: invalid URI 'model-registry://{}…' (102418 bytes): trailing '/' (an empty model or version name)",
                &cut[17..]
            ),
        ),
        (
            format!("model-registry://iris/{long}"),
            format!(
                "error: cannot resolve model 'iris' version '{cut}…' (102400 bytes) in model registry http://127.0.0.1:{port}: registry unreachable: GET http://127.0.0.1:{port}/api/model_registry/v1alpha3/registered_model?name=iris: Connection refused (os error 111) (after 4 attempts)"
            ),
        ),
        (
            format!("s3://{long}!/k"),
            format!(
                "error: invalid URI 's3://{}…' (102408 bytes): the bucket name '{cut}…' (102401 bytes) holds '!'",
                &cut[5..]
            ),
        ),
        (
            format!("s3://models/{long}"),
            format!(
                "error: cannot list s3://models/{}… (102412 bytes): ",
                &cut[12..]
            ),
        ),
    ];
    for (uri, last) in &cases {
        let out = run_env(&[uri, "/tmp/unused-dest"], &env);
        out.expect_code(1);
        assert!(out.last_line().starts_with(last.as_str()), "{out:#?}");
        assert!(out.last_line().len() < 400, "{}", out.last_line());
    }
}

/// A 100 KB model name is quoted twice (as the name, and inside the registry URL): the whole
/// line is bounded too (400 characters after `error: `), keeping what, where and why.
#[test]
fn a_huge_model_name_gives_a_bounded_error_line() {
    let long = "a".repeat(100 * 1024);
    let port = closed_port();
    let env = [("MODEL_REGISTRY_BASE_URL", format!("127.0.0.1:{port}"))];
    let out = run_env(
        &[&format!("model-registry://{long}"), "/tmp/unused-dest"],
        &env,
    );
    out.expect_code(1);
    let last = out.last_line();
    assert!(
        last.chars().count() <= 407,
        "{} characters: {last}",
        last.chars().count()
    );
    let what = format!(
        "error: cannot resolve model '{}…' (102400 bytes)",
        "a".repeat(120)
    );
    assert!(last.starts_with(&what), "{last}");
    assert!(
        last.contains(&format!("in model registry http://127.0.0.1:{port} …[")),
        "{last}"
    );
    assert!(last.contains(" characters cut]… "), "{last}");
    assert!(
        last.ends_with("… (102473 bytes): not a valid request URL (http: uri too long)"),
        "{last}"
    );
}

/// A URL ureq refuses to build a request from (a raw space, a DEL) is final: trying again
/// cannot help, and the line says what to change.
#[test]
fn an_unsendable_url_is_not_retried() {
    let port = closed_port();
    for (raw, shown) in [(" ", " "), ("\u{7f}", "\\u{7f}")] {
        let uri = format!("http://127.0.0.1:{port}/a{raw}b/model.bin");
        let out = run(&[&uri, "/tmp/unused-dest"], &[]);
        out.expect_code(1);
        assert!(!out.stderr.contains("attempt 1 of"), "{out:#?}");
        assert_eq!(
            out.last_line(),
            format!(
                "error: cannot download http://127.0.0.1:{port}/a{shown}b/model.bin: not a valid request URL (http: invalid uri character); write special characters as %XX"
            )
        );
    }
}

/// A registry answer over ureq's 10 MB cap is said to be too large, not "unreachable": the
/// registry answered, and trying again gets the same answer.
#[test]
fn a_registry_answer_over_10_mb_is_too_large() {
    use std::io::Write;
    let body = format!(r#"{{"name":"{}"}}"#, "x".repeat(11 << 20));
    let mut server = Server::start("127.0.0.1:0", move |mut stream| {
        if read_head(&stream).is_some() {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body.as_bytes());
        }
    });
    let base = format!("http://{}", server.addr());
    let out = run(
        &["--resolve", "model-registry://iris"],
        &[("MODEL_REGISTRY_BASE_URL", &base)],
    );
    server.stop();
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: cannot resolve model 'iris' (newest version) in model registry {base}: malformed registry response to GET {base}/api/model_registry/v1alpha3/registered_model?name=iris: the response is larger than 10 MB"
        )
    );
}

/// `scheme:/x` (one slash) is a typo, not a local path: the line says what was meant.
#[test]
fn a_scheme_with_one_slash_suggests_two() {
    let cases = [
        ("model-registry:/iris", "model-registry://iris"),
        ("s3:/bucket/model", "s3://bucket/model"),
        ("GS:/bucket", "GS://bucket"),
        ("file:/mnt/models", "file:///mnt/models"),
    ];
    for (uri, meant) in cases {
        let out = run(&[uri, "/tmp/unused-dest"], &[]);
        out.expect_code(1);
        assert_eq!(
            out.last_line(),
            format!("error: invalid URI '{uri}': did you mean '{meant}'?")
        );
    }
}

/// A password in a registry host is refused, and shown nowhere: not in the first log line, not
/// in the error line.
#[test]
fn a_password_in_a_registry_host_is_refused_and_never_shown() {
    let out = run(
        &[
            "model-registry://u:pw5ecret@127.0.0.1:9/iris/v1",
            "/tmp/unused-dest",
        ],
        &[],
    );
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        "error: invalid URI 'model-registry://u:<redacted>@127.0.0.1:9/iris/v1': a registry host takes no user or password (set MODEL_REGISTRY_TOKEN)"
    );
    assert!(!out.stderr.contains("pw5ecret"), "{}", out.stderr);
}
