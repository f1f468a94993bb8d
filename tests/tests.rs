//! The one integration-test binary (one link instead of one per file).

// Shared helpers: running the binary, the registry replay server.
mod support;

// The command line: arguments, help, exit codes.
mod cli;
// The download engine against an in-memory source.
mod engine;
// Fixtures against the OpenAPI spec, and the replay server's own checks.
mod fixtures;
// Resolution through a replayed registry over a real socket.
mod registry;
// http(s):// downloads against a file server on 127.0.0.1.
mod http;
// s3:// downloads against real S3 servers on 127.0.0.1.
mod s3;
// gs:// downloads against fake-gcs-server and local auth stand-ins.
mod gcs;
// Azure Blob downloads against Azurite and local token stand-ins.
mod azure;
// hf:// downloads against a local Hub, checked against huggingface_hub.
mod hf;
// Hostile paged listings on every object store.
mod listing;
// Extraction of a lone archive, hostile ones included.
mod archive;
// The whole job end to end, and the quickstart.
mod pipeline;
// STORAGE_ALLOW_PATTERNS / STORAGE_IGNORE_PATTERNS on every kind of source.
mod patterns;
// oci:// against a real registry.
mod oci;
// Pinned digests and the JSON result.
mod result;
// Every saved fuzzer input, replayed through its target.
mod fuzz_corpora;
// mr-controller against a Kubernetes API stand-in and a stateful registry.
mod controller;
