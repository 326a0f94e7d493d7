//! `init`: a tiny random Llama-family model in the Hugging Face layout (`config.json`,
//! `model.safetensors` with HF tensor names, a byte-level `tokenizer.json` and a
//! `tokenizer_config.json` with a chat template), for tests and the demo. Deterministic: the
//! same seed gives byte-identical weights, so examples can pin their sha256.

use std::path::Path;

use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};

/// The shape of a tiny Llama.
#[derive(Debug, Clone, PartialEq)]
pub struct TinyLlama {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub num_key_value_heads: i64,
    pub max_position_embeddings: i64,
    pub tie_word_embeddings: bool,
    pub rope_theta: f64,
    /// A `rope_scaling` object as `transformers` reads it (e.g. Llama 3's).
    pub rope_scaling: Option<serde_json::Value>,
    /// Standard deviation of the random weights (norm weights are ones).
    pub init_std: f64,
}

impl Default for TinyLlama {
    fn default() -> Self {
        Self {
            vocab_size: 259,
            hidden_size: 64,
            intermediate_size: 128,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            max_position_embeddings: 512,
            tie_word_embeddings: false,
            rope_theta: 10000.0,
            rope_scaling: None,
            init_std: 0.02,
        }
    }
}

/// Errors of `init`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("vocab_size must be at least 259 (3 special tokens + 256 bytes), got {0}")]
    Vocab(i64),
    #[error(
        "num_attention_heads ({heads}) must be a multiple of num_key_value_heads ({kv}) and divide hidden_size ({hidden})"
    )]
    Shape { heads: i64, kv: i64, hidden: i64 },
}

impl TinyLlama {
    /// The `config.json` Hugging Face `transformers` reads (`LlamaForCausalLM`).
    pub fn config_json(&self) -> serde_json::Value {
        serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "max_position_embeddings": self.max_position_embeddings,
            "hidden_act": "silu",
            "rms_norm_eps": 1e-5,
            "rope_theta": self.rope_theta,
            "rope_scaling": self.rope_scaling,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "torch_dtype": "float32",
        })
    }

    /// The tensors, by their Hugging Face names, drawn from N(0, 0.02) (norms: ones).
    pub fn tensors(&self, seed: i64) -> Result<Vec<(String, Tensor)>, Error> {
        let (h, i, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let (heads, kv) = (self.num_attention_heads, self.num_key_value_heads);
        if heads % kv != 0 || h % heads != 0 {
            return Err(Error::Shape {
                heads,
                kv,
                hidden: h,
            });
        }
        if v < 259 {
            return Err(Error::Vocab(v));
        }
        let kv_dim = h / heads * kv;
        crate::seeded(seed, || self.draw(h, i, v, kv_dim))
    }

    fn draw(&self, h: i64, i: i64, v: i64, kv_dim: i64) -> Result<Vec<(String, Tensor)>, Error> {
        let std = self.init_std;
        let normal =
            |shape: &[i64]| Tensor::zeros(shape, (Kind::Float, Device::Cpu)).normal_(0.0, std);
        let ones = |n: i64| Tensor::ones([n], (Kind::Float, Device::Cpu));
        let mut t = vec![("model.embed_tokens.weight".to_string(), normal(&[v, h]))];
        for l in 0..self.num_hidden_layers {
            let p = format!("model.layers.{l}");
            t.push((format!("{p}.input_layernorm.weight"), ones(h)));
            t.push((format!("{p}.self_attn.q_proj.weight"), normal(&[h, h])));
            t.push((format!("{p}.self_attn.k_proj.weight"), normal(&[kv_dim, h])));
            t.push((format!("{p}.self_attn.v_proj.weight"), normal(&[kv_dim, h])));
            t.push((format!("{p}.self_attn.o_proj.weight"), normal(&[h, h])));
            t.push((format!("{p}.post_attention_layernorm.weight"), ones(h)));
            t.push((format!("{p}.mlp.gate_proj.weight"), normal(&[i, h])));
            t.push((format!("{p}.mlp.up_proj.weight"), normal(&[i, h])));
            t.push((format!("{p}.mlp.down_proj.weight"), normal(&[h, i])));
        }
        t.push(("model.norm.weight".into(), ones(h)));
        if !self.tie_word_embeddings {
            t.push(("lm_head.weight".into(), normal(&[v, h])));
        }
        Ok(t)
    }

    /// Writes `config.json`, `model.safetensors`, `tokenizer.json` and `tokenizer_config.json`
    /// into `dir`; returns the weights' sha256.
    pub fn write(&self, dir: &Path, seed: i64) -> Result<String, Error> {
        let io = |what: String| move |source| Error::Io { what, source };
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let config = serde_json::to_string_pretty(&self.config_json()).unwrap_or_default();
        std::fs::write(dir.join("config.json"), config + "\n")
            .map_err(io("writing config.json".into()))?;
        let weights = dir.join("model.safetensors");
        Tensor::write_safetensors(&self.tensors(seed)?, &weights)?;
        for (name, json) in [
            (
                "tokenizer.json",
                crate::model::tokenizer::byte_level_tokenizer_json(),
            ),
            (
                "tokenizer_config.json",
                crate::model::tokenizer::byte_level_tokenizer_config(),
            ),
        ] {
            std::fs::write(dir.join(name), json.to_string())
                .map_err(io(format!("writing {name}")))?;
        }
        let bytes =
            std::fs::read(&weights).map_err(io(format!("reading {}", weights.display())))?;
        Ok(Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes_and_hf_names() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let m = TinyLlama::default();
        let da = m.write(a.path(), 7).unwrap();
        assert_eq!(
            da,
            m.write(b.path(), 7).unwrap(),
            "deterministic for a seed"
        );
        assert_ne!(
            da,
            m.write(b.path(), 8).unwrap(),
            "another seed, other weights"
        );
        let names: Vec<String> = Tensor::read_safetensors(a.path().join("model.safetensors"))
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert!(names.contains(&"model.layers.1.self_attn.k_proj.weight".to_string()));
        assert_eq!(names.len(), 2 + 9 * 2 + 1);
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(a.path().join("config.json")).unwrap())
                .unwrap();
        assert_eq!(config["num_key_value_heads"], 2);
    }

    #[test]
    fn the_example_finetune_job_pins_this_models_digest() {
        let dir = tempfile::tempdir().unwrap();
        let digest = TinyLlama::default().write(dir.path(), 7).unwrap();
        let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/contract-review/04-finetune.yaml");
        let text = std::fs::read_to_string(example).unwrap();
        assert!(
            text.contains(&format!("sha256: {digest}")),
            "04-finetune.yaml must pin the digest of `modelcommons-trainer init --seed 7`: {digest}"
        );
    }

    #[test]
    fn impossible_shapes_are_refused() {
        let m = TinyLlama {
            num_key_value_heads: 3,
            ..TinyLlama::default()
        };
        assert!(matches!(m.tensors(1), Err(Error::Shape { .. })));
    }
}
