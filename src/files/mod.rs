//! Stored images (issue 14, in progress): the signature that lets a file URL be loaded without
//! the bearer key, until it expires.

pub mod signature;
