//! The one HTTP stack: every remote call the program makes goes through here, so timeouts,
//! proxies, CA bundles, redirects and retry rules are the same for the registry and for every
//! storage backend.
//!
//! `agent` builds the agent and its trust store; `redirect` sends one GET hop by hop;
//! `transport` says why a request got no answer; `retry` tries again; `status` words what
//! failed; `ranged` is the resumable download.

mod agent;
mod ranged;
mod redirect;
mod retry;
mod status;
mod transport;

pub use agent::{Trust, USER_AGENT, agent};
pub use ranged::{BUFFER_SIZE, Headers, content_range, download};
pub use redirect::join_url;
pub use retry::{ATTEMPTS, backoff, get_with_retry, is_retryable, post_form_with_retry};
pub use status::{Failure, PLAIN_HTTP, StatusError};
pub use transport::describe;
