//! The modelcommons trainer: libtorch through tch.
//!
//! - [`config`], [`model`], [`tokenizer`]: a Llama-family causal LM in the Hugging Face layout.
//! - [`generate`]: sampling with a KV cache, stop strings, streamed text.
//! - [`data`], [`optim`], [`train`], [`eval`], [`dpo`]: SFT (full or LoRA) with checkpoints,
//!   evaluation against targets, Direct Preference Optimization.
//! - [`report`]: progress and results into a FineTuneJob's status (or the terminal).
//! - [`device`]: picks CUDA when libtorch sees a GPU, the CPU otherwise.
//! - [`init`]: a tiny random Llama in the Hugging Face layout, deterministic per seed.
//! - [`selftest`]: a tiny regression network trained end to end; proves libtorch loads,
//!   computes gradients and optimizes on this machine (and on a GPU node, with CUDA).
//! - [`serve`]: the OpenAI-compatible HTTP server (API keys, rate limits, usage metering) that
//!   ModelDeployment pods run.

pub mod bench;
pub mod cli;
pub mod config;
pub mod data;
pub mod device;
pub mod dpo;
pub mod eval;
pub mod generate;
pub mod init;
pub mod model;
pub mod optim;
pub mod report;
pub mod selftest;
pub mod serve;
pub mod tokenizer;
pub mod train;

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
