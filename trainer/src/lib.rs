//! The modelcommons trainer: libtorch through tch.
//!
//! - [`model`]: a Llama-family causal LM in the Hugging Face layout (`config`, `llama`,
//!   `tokenizer`), sampling with a KV cache, stop strings, streamed text (`generate`), and a
//!   tiny random Llama, deterministic per seed (`init`).
//! - [`train`]: SFT (full or LoRA) with checkpoints (`data`, `optim`), evaluation against
//!   targets (`eval`), Direct Preference Optimization (`dpo`), and progress and results into a
//!   FineTuneJob's status or the terminal (`report`).
//! - [`cli`]: the `modelcommons-trainer` command line.
//! - [`device`]: picks CUDA when libtorch sees a GPU, the CPU otherwise.
//! - [`selftest`]: a tiny regression network trained end to end; proves libtorch loads,
//!   computes gradients and optimizes on this machine (and on a GPU node, with CUDA).
//! - [`serve`]: the OpenAI-compatible HTTP server (API keys, rate limits, usage metering) that
//!   ModelDeployment pods run.

pub mod bench;
pub mod cli;
pub mod device;
pub mod model;
pub mod selftest;
pub mod serve;
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
