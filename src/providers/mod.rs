//! Providers: one module per kind, each with pure functions that build the upstream request and
//! read the upstream answer.

pub mod openai;
pub mod test_pattern;
