//! The operator against the real control plane, a real anvil chain and the real binaries:
//! one test binary for the crate (it links kube, alloy and object_store once), a module per
//! concern. `cargo test -p modelcommons-operator --test it attacks::` runs one module.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

mod attacks;
mod crash;
mod deployment_controller;
mod example_contributions;
mod finetune_controller;
mod install;
mod leader_election;
mod lifecycle;
mod object_stores;
mod rbac;
