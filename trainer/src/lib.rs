//! The modelcommons trainer: libtorch through tch.
//!
//! - [`device`]: picks CUDA when libtorch sees a GPU, the CPU otherwise.
//! - [`selftest`]: a tiny regression network trained end to end; proves libtorch loads,
//!   computes gradients and optimizes on this machine (and on a GPU node, with CUDA).

pub mod device;
pub mod selftest;
