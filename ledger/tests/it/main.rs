//! The ledger against a real anvil chain and the real compiled contracts: one test binary
//! for the crate, a module per concern.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod anvil;
mod governance;
mod invariants;
mod mirror;
mod rewards;
