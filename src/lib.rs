//! imagegate: an edge gateway for image generation APIs.
//!
//! The crate is a pure core, compiled and tested natively, and a thin [`edge`] layer (wasm32
//! only) that connects it to the Workers runtime. [`pipeline`] is where a request's stages are
//! named and driven; start reading there.

pub mod action;
pub mod action_list;
pub mod answer;
pub mod answer_scan;
pub mod auth;
pub mod cache;
pub mod catalogue;
pub mod clock;
pub mod config;
pub mod cors;
pub mod error;
pub mod event_relay;
pub mod fields;
pub mod files;
pub mod http;
pub mod image_stream;
pub mod inputs;
pub mod jobs;
pub mod keys;
pub mod limits;
pub mod log;
pub mod media_type;
pub mod multipart;
pub mod openrouter_generation;
pub mod pipeline;
pub mod png;
pub mod policy;
pub mod pricing;
pub mod providers;
pub mod request;
pub mod retention;
pub mod route_stats;
pub mod routes;
pub mod secret;
pub mod sse;
pub mod state;
pub mod upstream;
pub mod usage;

#[cfg(target_arch = "wasm32")]
mod edge;
