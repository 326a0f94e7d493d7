//! The modelcommons trainer: libtorch through tch.
//!
//! - [`device`]: picks CUDA when libtorch sees a GPU, the CPU otherwise.
//! - [`init`]: a tiny random Llama in the Hugging Face layout, deterministic per seed.
//! - [`report`]: progress and the result into the FineTuneJob's status (or onto the terminal).
//! - [`selftest`]: a tiny regression network trained end to end; proves libtorch loads,
//!   computes gradients and optimizes on this machine (and on a GPU node, with CUDA).

pub mod device;
pub mod init;
pub mod report;
pub mod selftest;

/// Runs `f` with libtorch's process-wide generator seeded to `seed`, holding a lock so that no
/// other thread reseeds or draws from it meanwhile (same seed, same numbers, even when tests
/// run in parallel).
pub fn seeded<T>(seed: i64, f: impl FnOnce() -> T) -> T {
    static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = RNG
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    tch::manual_seed(seed);
    f()
}
