//! The test bed's chain helpers, and the operator's own test helpers.

#![allow(dead_code, clippy::unwrap_used)]

pub use modelcommons_testbed::chain::*;

pub mod lifecycle;
pub mod stores;
