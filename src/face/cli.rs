//! The command line: `[OPTIONS] SRC_URI DEST_DIR [SRC_URI DEST_DIR ...]`. Pure: parses an
//! iterator of arguments (without the program name), reads no environment.
//!
//! Help and version are results, not exits, so they are testable. KServe passes exactly
//! `[storageUri, "/mnt/models"]`, or `uri1 path1 uri2 path2 ...` for `storageUris`.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::engine::Options;
use crate::error::{Error, quote};
use crate::fetch::hf::is_hf_uri;
use crate::fetch::oci::is_oci_uri;
use crate::uri::is_registry_uri;

/// One line saying how to call the program; printed with every usage error.
pub(crate) const USAGE: &str = "usage: mr-storage-initializer [OPTIONS] SRC_URI DEST_DIR [SRC_URI DEST_DIR ...]\n       mr-storage-initializer --resolve MODEL_REGISTRY_URI|HF_URI|OCI_URI [DEST_DIR]";

/// `--help`.
pub(crate) const HELP: &str = "\
mr-storage-initializer: put a model where a KServe model server can load it.

Resolves model-registry:// URIs through the Kubeflow Model Registry, picks the newest model
artifact, and downloads its files into DEST_DIR. Also takes storage URIs directly.

USAGE:
    mr-storage-initializer [OPTIONS] SRC_URI DEST_DIR [SRC_URI DEST_DIR ...]
    mr-storage-initializer --resolve MODEL_REGISTRY_URI|HF_URI|OCI_URI [DEST_DIR]

ARGS:
    SRC_URI     model-registry://[HOST[:PORT]/]MODEL[/VERSION][?namespace=NS]
                (names may be percent-encoded: my%20model, v1%2Frc),
                s3://BUCKET[/PREFIX], gs://BUCKET[/PREFIX],
                https://ACCOUNT.blob.core.windows.net/CONTAINER[/PREFIX][?SAS],
                hf://OWNER/REPO[:REVISION] (a Hugging Face Hub repository),
                oci://REGISTRY[:PORT]/REPOSITORY[:TAG|@sha256:DIGEST] (an OCI artifact or image),
                http(s)://HOST/PATH/FILE, file:///PATH or a local path
    DEST_DIR    where the files go; created if missing (KServe: /mnt/models)

OPTIONS:
    -j, --jobs N    parallel transfers (default 16; oci:// tar layers: at most 4 at once)
    --dry-run       print what would be written (size and path, one per line), write nothing
    --resolve       resolve a model-registry:// URI (or an hf:// URI's revision to its
                    commit, an oci:// URI's tag to its manifest digest), print the result as
                    one JSON object on stdout (with the file patterns, when set), download
                    nothing
    --json          print the result (the JSON written to the termination message file) on
                    stdout too
    -h, --help      print this help
    -V, --version   print the version

A single downloaded .tar, .tar.gz, .tgz or .zip is extracted into DEST_DIR and removed.
Files are written under hidden .NAME.mrsi-part names and renamed when complete; a rerun
skips files already complete and resumes large ones. What a run completed is noted in
DEST_DIR/.mrsi-manifest (oci:// tar layers applied: DEST_DIR/.mrsi-layers, a layer skipped
when the files it left are untouched); one over 64 MiB, or with a line over 1 MiB, is ignored.

ENVIRONMENT (empty counts as unset):
    MODEL_REGISTRY_BASE_URL        default registry, host[:port] or a URL with a path prefix
                                   (default localhost:8080)
    MODEL_REGISTRY_SCHEME          http or https when the base URL has no scheme (default http)
    MODEL_REGISTRY_SERVICE_NAME    service name for ?namespace= (default model-registry-service)
    MODEL_REGISTRY_CLUSTER_DOMAIN  cluster domain for ?namespace= (default svc.cluster.local)
    MODEL_REGISTRY_TOKEN           bearer token for the registry
    MODEL_REGISTRY_TOKEN_FILE      file holding the bearer token (re-read on each run)
    MODEL_REGISTRY_TOKEN_HOSTS     comma-separated host[:port] named in URIs that may get the
                                   token too (the base URL's host and ?namespace= always do)
    MODEL_REGISTRY_CA_FILE         extra PEM CA bundle to trust for the registry
    ALLOWED_ARTIFACT_URI_PREFIXES  comma-separated prefixes an artifact URI must start with
    <hostname>-headers             JSON object of extra HTTP headers for that host
    SSL_CERT_FILE                  extra PEM CA bundle to trust (built-in and system roots
                                   are always trusted)
    CA_BUNDLE_CONFIGMAP_NAME       with CA_BUNDLE_VOLUME_MOUNT_POINT: KServe's CA bundle
    ALL_PROXY, HTTPS_PROXY, HTTP_PROXY
                                   proxy URL for every request, http:// and https:// alike:
                                   the first of these that is set (lower case too)
    NO_PROXY                       hosts reached without the proxy
    MRSI_LOW_SPEED_LIMIT, MRSI_LOW_SPEED_TIME
                                   a response slower than LIMIT bytes/s for TIME seconds is
                                   abandoned and retried (default 1024 and 30; 0 turns it off)
    MRSI_REGISTRY_TIMEOUT          seconds each registry call may take, retries included
                                   (default 60)
    MRSI_ALLOW_ADDRESSES           comma-separated ADDRESS/PREFIX ranges the link-local and
                                   metadata block lets through (default none)
    MRSI_REFUSE_ADDRESSES          comma-separated ADDRESS/PREFIX ranges no connection may
                                   reach, besides 169.254.0.0/16, fe80::/10, fd00:ec2::254
    RUST_LOG                       log level (default info); a bare level is this program's,
                                   a dependency's is asked for by name (ureq=debug)
    STORAGE_ALLOW_PATTERNS, STORAGE_IGNORE_PATTERNS
                                   KServe's file patterns, a JSON array or a comma list: only
                                   paths (below the URI) matching an allow pattern and no
                                   ignore pattern are downloaded; fnmatch, * crosses /
    VERIFICATION_DIGEST            sha256:HEX the one downloaded file (or lone archive, before
                                   extraction) must hash to
    MRSI_DIGEST_MANIFEST           JSON {\"PATH\": \"sha256:HEX\", ...}: every downloaded file
                                   must be named and match, and every name be downloaded
    MRSI_DIGEST_MANIFEST_FILE      a file holding that JSON
    MRSI_SHA256                    true: compute every file's SHA-256 for the result even
                                   when nothing is pinned
    MRSI_RESULT_FILE               where the result JSON goes (default /dev/termination-log
                                   when it exists)

  S3 (KServe's names and meanings):
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
                                   keys; without any credentials requests go unsigned
    AWS_SESSION_TOKEN              session token for temporary keys
    AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE  web identity (IRSA), exchanged at STS;
                                   AWS_ROLE_SESSION_NAME, AWS_ENDPOINT_URL_STS optional
    awsAnonymousCredential         true: unsigned requests even when keys are set
    AWS_REGION, AWS_DEFAULT_REGION region (default us-east-1)
    AWS_ENDPOINT_URL               endpoint URL (MinIO, Ceph...); path-style by default
    S3_ENDPOINT, S3_USE_HTTPS      host[:port] and 1/0, when AWS_ENDPOINT_URL is not set
    S3_USER_VIRTUAL_BUCKET         true: virtual-hosted addressing; false: path-style
    S3_USE_ACCELERATE              true: the AWS Transfer Acceleration endpoint
    S3_VERIFY_SSL                  0 or false: do not verify the endpoint's certificate
    AWS_CA_BUNDLE                  PEM CA bundle that replaces the trust store for S3
    STORAGE_CONFIG, STORAGE_OVERRIDE_CONFIG  KServe's storage-spec JSON (type s3), laid
                                   over the variables above

  GCS (Google's names):
    GOOGLE_APPLICATION_CREDENTIALS service-account key or user credentials JSON file; else
                                   the metadata server, else anonymous requests
    GCE_METADATA_HOST              the metadata server's host[:port]
    STORAGE_EMULATOR_HOST          an emulator's host:port or URL, reached without auth
    CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE  another JSON API endpoint, reached with auth

  Azure Blob (KServe's and Azure's names; AZ_CLIENT_ID, AZ_TENANT_ID, AZ_CLIENT_SECRET too):
    AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_CLIENT_SECRET   service principal
    AZURE_FEDERATED_TOKEN_FILE     workload identity token (with the client and tenant ids)
    AZURE_AUTHORITY_HOST           token authority (default https://login.microsoftonline.com)
    AZURE_STORAGE_ACCESS_KEY       account key (Shared Key signing)
    AZURE_STORAGE_BLOB_ENDPOINT    replaces https://ACCOUNT.blob.core.windows.net (Azurite)
    AZURE_STORAGE_CONNECTION_STRING  BlobEndpoint, AccountName, AccountKey or
                                   SharedAccessSignature

  Hugging Face Hub (huggingface_hub's names):
    HF_ENDPOINT                    the Hub or a mirror (default https://huggingface.co)
    HF_TOKEN                       token, sent to HF_ENDPOINT only
    HF_TOKEN_PATH                  file holding the token (default HF_HOME/token)
    HF_HOME                        where the saved token is looked for (default
                                   $XDG_CACHE_HOME/huggingface or ~/.cache/huggingface)

  OCI registries (oci://):
    REGISTRY_AUTH_FILE             Docker config / auth.json with registry credentials
    DOCKER_CONFIG                  folder with config.json or a mounted .dockerconfigjson
    KSERVE_OCI_DOCKER_CONFIG       KServe's (default /mnt/oci-fetch-auth/config.json)
    OCI_INSECURE_REGISTRIES        host[:port],... reached over plain HTTP
    OCI_PLATFORM                   os/arch[/variant] taken from an image index
    OCI_MODEL_DIR                  an image's folder that lands in DEST_DIR (default /models)
                                   (default: the running platform)

EXIT STATUS:
    0 success, 1 failure at run time, 2 bad command line, 143 SIGTERM, 130 SIGINT.
    A signal stops the run within 2 s and leaves temporary files a rerun resumes from.
    On failure the last line on stderr says what failed, where and why.
";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// Download each pair in order, stopping at the first failure; with `json`, print the
    /// result on stdout too.
    Run {
        pairs: Vec<Pair>,
        options: Options,
        json: bool,
    },
    /// Resolve one `model-registry://` URI (or an `hf://` URI's revision) and print the
    /// result.
    Resolve(String),
    /// Print help.
    Help,
    /// Print the version.
    Version,
}

/// One `SRC_URI DEST_DIR` pair.
#[derive(Debug, PartialEq, Eq)]
pub struct Pair {
    pub src: String,
    pub dest: PathBuf,
}

/// Parses arguments that do not start with the program name.
pub(crate) fn parse_args<I>(args: I) -> Result<Command, Error>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    use lexopt::prelude::*;
    let usage = |e: lexopt::Error| Error::Usage(e.to_string());
    let mut resolve = false;
    let mut json = false;
    let mut options = Options::default();
    let mut values: Vec<OsString> = Vec::new();
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next().map_err(usage)? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Long("resolve") => resolve = true,
            Long("dry-run") => options.dry_run = true,
            Long("json") => json = true,
            Short('j') | Long("jobs") => {
                let value = parser.value().map_err(usage)?;
                options.jobs = match value.to_str().and_then(|v| v.parse().ok()) {
                    Some(n) if n > 0 => n,
                    _ => {
                        return Err(Error::Usage(format!(
                            "-j/--jobs takes a number of parallel transfers above 0, got {value:?}"
                        )));
                    }
                };
            }
            Value(v) => values.push(v),
            _ => return Err(usage(arg.unexpected())),
        }
    }

    if resolve {
        if values.is_empty() || values.len() > 2 {
            return Err(Error::Usage(format!(
                "--resolve takes one model-registry://, hf:// or oci:// URI (and optionally DEST_DIR), got {} argument(s)",
                values.len()
            )));
        }
        let uri = utf8(values.swap_remove(0))?;
        if !is_registry_uri(&uri) && !is_hf_uri(&uri) && !is_oci_uri(&uri) {
            return Err(Error::Usage(format!(
                "--resolve needs a model-registry://, hf:// or oci:// URI, got {}",
                quote(&uri)
            )));
        }
        return Ok(Command::Resolve(uri));
    }

    if json && options.dry_run {
        return Err(Error::Usage(
            "--json and --dry-run both write stdout: give one of them".into(),
        ));
    }
    if values.is_empty() || !values.len().is_multiple_of(2) {
        return Err(Error::Usage(format!(
            "expected SRC_URI DEST_DIR pairs, got {} argument(s)",
            values.len()
        )));
    }
    let mut pairs = Vec::with_capacity(values.len() / 2);
    let mut it = values.into_iter();
    while let (Some(src), Some(dest)) = (it.next(), it.next()) {
        pairs.push(Pair {
            src: utf8(src)?,
            dest: PathBuf::from(dest),
        });
    }
    Ok(Command::Run {
        pairs,
        options,
        json,
    })
}

fn utf8(value: OsString) -> Result<String, Error> {
    value
        .into_string()
        .map_err(|v| Error::Usage(format!("SRC_URI {v:?} is not valid UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::DEFAULT_JOBS;

    fn parse(args: &str) -> Result<Command, String> {
        parse_args(args.split_whitespace()).map_err(|e| e.to_string())
    }

    fn run(pairs: Vec<Pair>) -> Command {
        Command::Run {
            pairs,
            options: Options::default(),
            json: false,
        }
    }

    fn pair(src: &str, dest: &str) -> Pair {
        Pair {
            src: src.into(),
            dest: dest.into(),
        }
    }

    #[test]
    fn pairs() {
        assert_eq!(
            parse("model-registry://iris /mnt/models"),
            Ok(run(vec![pair("model-registry://iris", "/mnt/models")]))
        );
        assert_eq!(
            parse("s3://a/b /mnt/a gs://c/d /mnt/c"),
            Ok(run(vec![
                pair("s3://a/b", "/mnt/a"),
                pair("gs://c/d", "/mnt/c")
            ]))
        );
    }

    #[test]
    fn counts_that_are_not_pairs() {
        for (args, n) in [("", 0), ("a b c", 3)] {
            let want = format!("expected SRC_URI DEST_DIR pairs, got {n} argument(s)");
            assert_eq!(parse(args), Err(want), "{args}");
        }
    }

    #[test]
    fn help_and_version_win_anywhere() {
        assert_eq!(parse("x -h"), Ok(Command::Help));
        assert_eq!(parse("--help a b c"), Ok(Command::Help));
        assert_eq!(parse("-V"), Ok(Command::Version));
    }

    #[test]
    fn unknown_option() {
        assert_eq!(parse("--nope a b"), Err("invalid option '--nope'".into()));
    }

    #[test]
    fn double_dash_lets_a_dash_path_through() {
        assert_eq!(
            parse("-- s3://a/b -weird-dir"),
            Ok(run(vec![pair("s3://a/b", "-weird-dir")]))
        );
    }

    #[test]
    fn jobs_and_dry_run() {
        for (args, jobs, dry_run) in [
            ("-j 3 --dry-run s3://a/b /d", 3, true),
            ("s3://a/b /d --jobs=12", 12, false),
        ] {
            let Ok(Command::Run { options, .. }) = parse(args) else {
                panic!("not a run");
            };
            assert_eq!((options.jobs, options.dry_run), (jobs, dry_run), "{args}");
        }
        assert_eq!(DEFAULT_JOBS, Options::default().jobs);
        for bad in ["-j 0 a b", "-j x a b", "-j -1 a b"] {
            let err = parse(bad).unwrap_err();
            assert!(err.starts_with("-j/--jobs takes a number"), "{bad}: {err}");
        }
        assert!(parse("a b -j").is_err());
    }

    #[test]
    fn json_goes_with_a_run_not_a_dry_run() {
        let Ok(Command::Run { json, .. }) = parse("--json s3://a/b /d") else {
            panic!("not a run");
        };
        assert!(json);
        assert_eq!(
            parse("--json --dry-run s3://a/b /d"),
            Err("--json and --dry-run both write stdout: give one of them".into())
        );
    }

    #[test]
    fn resolve_takes_one_uri_and_an_optional_dest() {
        assert_eq!(
            parse("--resolve model-registry://iris"),
            Ok(Command::Resolve("model-registry://iris".into()))
        );
        assert_eq!(
            parse("--resolve model-registry://iris/v1 /mnt/models"),
            Ok(Command::Resolve("model-registry://iris/v1".into()))
        );
        assert_eq!(
            parse("--resolve s3://a/b"),
            Err("--resolve needs a model-registry://, hf:// or oci:// URI, got 's3://a/b'".into())
        );
        assert_eq!(
            parse("--resolve hf://a/b:v1"),
            Ok(Command::Resolve("hf://a/b:v1".into()))
        );
        assert!(parse("--resolve").is_err());
        assert!(parse("--resolve a b c").is_err());
    }
}
