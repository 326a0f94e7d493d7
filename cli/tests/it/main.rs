//! The `modelcommons` CLI as its users run it, against a real anvil chain: one test binary
//! for the crate, a module per concern.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod bootstrap;
mod chain;
