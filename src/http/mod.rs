//! The one HTTP stack: every remote call the program makes goes through here, so timeouts,
//! proxies, CA bundles, redirects and retry rules are the same for the registry and for every
//! storage backend.
//!
//! `agent` builds the agent and its trust store; `retry` sends a GET hop by hop and tries
//! again; `status` words what failed, and why a request got no answer; `ranged` is the
//! resumable get_resumable; `date` turns the clock into the dates requests and logs carry.

mod agent;
pub(crate) mod date;
mod ranged;
mod retry;
mod status;

pub use agent::{Trust, agent};
pub use ranged::{Headers, get_resumable};

pub(crate) use agent::{USER_AGENT, registry_agent, run_within};
pub(crate) use ranged::{ALIGN, BUFFER_SIZE, content_range, get_resumable_seeing};
pub(crate) use retry::{get_with_retry, header, post_form_with_retry};
pub(crate) use status::{Failure, PLAIN_HTTP, StatusError, describe, describe_in, read_text};
