//! The trainer and server as their binary runs, against real libtorch (and, for parity, the
//! Python reference): one test binary for the crate (libtorch linked once), a module per
//! concern.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

mod parity;
mod report;
mod serve;
mod train;
