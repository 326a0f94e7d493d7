//! The model: a Llama-family causal LM in the Hugging Face layout ([`config`], [`llama`],
//! [`tokenizer`]), sampling from it ([`generate`]), and a tiny random one for tests ([`init`]).

pub mod config;
pub mod generate;
pub mod init;
pub mod llama;
pub mod tokenizer;

pub use llama::*;
