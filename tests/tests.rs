//! The one integration-test binary (one link instead of one per file).

// Shared helpers: running the binary, the registry replay server.
mod support;

// The command line: arguments, help, exit codes.
mod cli;
// Fixtures against the OpenAPI spec, and the replay server's own checks.
mod fixtures;
// Resolution through a replayed registry over a real socket.
mod registry;
