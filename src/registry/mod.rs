//! The registry side: from a parsed `model-registry://` URI to the artifact URI to fetch. The
//! REST client (`client`), which registry and which calls (`resolve`), and the pure choice of
//! the newest live version and its newest model artifact (`select`).

pub(crate) mod client;
pub(crate) mod resolve;
pub(crate) mod select;
