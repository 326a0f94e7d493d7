//! The Hugging Face `config.json` of a Llama-family causal LM, as `transformers` reads it.
//!
//! Both spellings of RoPE settings are accepted: the 4.x keys (`rope_theta`, `rope_scaling`)
//! and the 5.x `rope_parameters` object.

use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// RoPE frequency scaling.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    Default,
    /// Position interpolation: every frequency divided by `factor`.
    Linear { factor: f64 },
    /// Llama 3.1 style: low frequencies scaled by `factor`, high ones kept, a smooth ramp between.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
}

/// The parsed configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub num_key_value_heads: i64,
    pub head_dim: i64,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    pub max_position_embeddings: i64,
    pub tie_word_embeddings: bool,
    pub attention_bias: bool,
    pub mlp_bias: bool,
    pub bos_token_id: Option<i64>,
    pub eos_token_ids: Vec<i64>,
}

#[derive(Deserialize, Serialize)]
#[serde(untagged)]
enum OneOrMany {
    One(i64),
    Many(Vec<i64>),
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    model_type: Option<String>,
    vocab_size: i64,
    hidden_size: i64,
    intermediate_size: i64,
    num_hidden_layers: i64,
    num_attention_heads: i64,
    #[serde(default)]
    num_key_value_heads: Option<i64>,
    #[serde(default)]
    head_dim: Option<i64>,
    #[serde(default)]
    rms_norm_eps: Option<f64>,
    #[serde(default)]
    rope_theta: Option<f64>,
    #[serde(default)]
    rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    rope_parameters: Option<serde_json::Value>,
    #[serde(default)]
    max_position_embeddings: Option<i64>,
    #[serde(default)]
    tie_word_embeddings: Option<bool>,
    #[serde(default)]
    attention_bias: Option<bool>,
    #[serde(default)]
    mlp_bias: Option<bool>,
    #[serde(default)]
    hidden_act: Option<String>,
    #[serde(default)]
    bos_token_id: Option<i64>,
    #[serde(default)]
    eos_token_id: Option<OneOrMany>,
}

fn num(v: &serde_json::Value, key: &str) -> anyhow::Result<f64> {
    v.get(key)
        .and_then(serde_json::Value::as_f64)
        .with_context(|| format!("rope scaling needs a number `{key}`"))
}

fn parse_scaling(v: Option<&serde_json::Value>) -> anyhow::Result<RopeScaling> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(RopeScaling::Default);
    };
    let kind = v
        .get("rope_type")
        .or_else(|| v.get("type"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or("default");
    Ok(match kind {
        "default" => RopeScaling::Default,
        "linear" => RopeScaling::Linear {
            factor: num(v, "factor")?,
        },
        "llama3" => RopeScaling::Llama3 {
            factor: num(v, "factor")?,
            low_freq_factor: num(v, "low_freq_factor")?,
            high_freq_factor: num(v, "high_freq_factor")?,
            original_max_position_embeddings: num(v, "original_max_position_embeddings")?,
        },
        other => bail!(
            "rope scaling type `{other}` is not supported (supported: default, linear, llama3)"
        ),
    })
}

impl LlamaConfig {
    /// Parses a `config.json` text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let raw: Raw = serde_json::from_str(text).context("config.json is not a Llama config")?;
        if let Some(t) = raw.model_type.as_deref()
            && !matches!(t, "llama" | "mistral")
        {
            bail!("model_type `{t}` is not a Llama-family model this trainer implements");
        }
        if let Some(act) = raw.hidden_act.as_deref()
            && act != "silu"
        {
            bail!("hidden_act `{act}` is not supported (Llama uses silu)");
        }
        let kv = raw.num_key_value_heads.unwrap_or(raw.num_attention_heads);
        if raw.num_attention_heads <= 0 || kv <= 0 || raw.num_attention_heads % kv != 0 {
            bail!(
                "num_attention_heads ({}) must be a positive multiple of num_key_value_heads ({kv})",
                raw.num_attention_heads
            );
        }
        let head_dim = raw
            .head_dim
            .unwrap_or(raw.hidden_size / raw.num_attention_heads);
        if head_dim <= 0 || head_dim % 2 != 0 {
            bail!("head_dim ({head_dim}) must be a positive even number");
        }
        // transformers 5 moved rope_theta and the scaling into `rope_parameters`.
        let params = raw.rope_parameters.as_ref();
        let rope_theta = params
            .and_then(|p| p.get("rope_theta"))
            .and_then(serde_json::Value::as_f64)
            .or(raw.rope_theta)
            .unwrap_or(10000.0);
        let rope_scaling = match params {
            Some(p) => parse_scaling(Some(p))?,
            None => parse_scaling(raw.rope_scaling.as_ref())?,
        };
        Ok(Self {
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            num_key_value_heads: kv,
            head_dim,
            rms_norm_eps: raw.rms_norm_eps.unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            max_position_embeddings: raw.max_position_embeddings.unwrap_or(2048),
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            attention_bias: raw.attention_bias.unwrap_or(false),
            mlp_bias: raw.mlp_bias.unwrap_or(false),
            bos_token_id: raw.bos_token_id,
            eos_token_ids: match raw.eos_token_id {
                None => vec![],
                Some(OneOrMany::One(i)) => vec![i],
                Some(OneOrMany::Many(v)) => v,
            },
        })
    }

    /// Reads `dir/config.json`.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// How many query heads share one key/value head.
    pub fn kv_groups(&self) -> i64 {
        self.num_attention_heads / self.num_key_value_heads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_v4_and_v5_rope_spellings() {
        let v4 = r#"{"model_type":"llama","vocab_size":10,"hidden_size":8,"intermediate_size":16,
            "num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,"rope_theta":500000.0,
            "rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,
            "original_max_position_embeddings":8192},"eos_token_id":[2,3]}"#;
        let c = LlamaConfig::parse(v4).unwrap();
        assert_eq!(c.rope_theta, 500000.0);
        assert!(matches!(c.rope_scaling, RopeScaling::Llama3 { factor, .. } if factor == 8.0));
        assert_eq!(c.eos_token_ids, vec![2, 3]);
        assert_eq!((c.head_dim, c.kv_groups()), (4, 2));
        let v5 = r#"{"vocab_size":10,"hidden_size":8,"intermediate_size":16,"num_hidden_layers":1,
            "num_attention_heads":2,"rope_parameters":{"rope_type":"linear","factor":2.0,"rope_theta":1000.0}}"#;
        let c = LlamaConfig::parse(v5).unwrap();
        assert_eq!(c.rope_theta, 1000.0);
        assert_eq!(c.rope_scaling, RopeScaling::Linear { factor: 2.0 });
        assert_eq!(c.num_key_value_heads, 2);
    }

    #[test]
    fn refuses_what_it_cannot_run() {
        let bad_heads = r#"{"vocab_size":10,"hidden_size":12,"intermediate_size":16,"num_hidden_layers":1,
            "num_attention_heads":3,"num_key_value_heads":2}"#;
        assert!(
            LlamaConfig::parse(bad_heads)
                .unwrap_err()
                .to_string()
                .contains("multiple")
        );
        let yarn = r#"{"vocab_size":10,"hidden_size":8,"intermediate_size":16,"num_hidden_layers":1,
            "num_attention_heads":2,"rope_scaling":{"rope_type":"yarn","factor":4.0}}"#;
        assert!(
            LlamaConfig::parse(yarn)
                .unwrap_err()
                .to_string()
                .contains("yarn")
        );
        let gpt2 = r#"{"model_type":"gpt2","vocab_size":10,"hidden_size":8,"intermediate_size":16,
            "num_hidden_layers":1,"num_attention_heads":2}"#;
        assert!(LlamaConfig::parse(gpt2).is_err());
    }
}
