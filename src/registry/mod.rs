//! The registry side: from a parsed `model-registry://` URI to the artifact URI to fetch. The
//! REST client (`client`), which registry and which calls (`resolve`), and the pure choice of
//! the newest live version and its newest model artifact (`select`). The controller's
//! write side: ServingEnvironments and InferenceServices (`serving`).

pub(crate) mod client;
pub(crate) mod resolve;
pub(crate) mod select;
pub(crate) mod serving;
