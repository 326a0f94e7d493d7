//! A Llama-family causal LM in tch, numerically the `transformers` `LlamaForCausalLM`:
//! RMSNorm (computed in f32), RoPE with `rope_theta` and linear / Llama 3 scaling, SwiGLU MLP,
//! grouped-query attention (`num_key_value_heads`), tied or untied embeddings, optional LoRA
//! adapters (PEFT names and init) on any linear projection, and a preallocated KV cache.
//!
//! Weights come from `model.safetensors` or a sharded checkpoint with
//! `model.safetensors.index.json`, under the Hugging Face tensor names. Every shape is checked
//! at load, so the forward pass cannot fail on a well-formed input.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, bail};
use tch::{Device, Kind, Tensor};

use crate::model::config::{LlamaConfig, RopeScaling};

/// The PEFT prefix of adapter tensor names (`adapter_model.safetensors`).
pub const PEFT_PREFIX: &str = "base_model.model.";

/// The projections LoRA can adapt.
pub const LORA_TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// LoRA hyperparameters (PEFT's `LoraConfig` subset).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoraConfig {
    /// Rank `r`.
    pub r: i64,
    /// `lora_alpha`; the update is scaled by alpha / r.
    pub alpha: f64,
    /// Dropout on the adapter's input while training.
    pub dropout: f64,
    /// Which projections get adapters (e.g. `q_proj`, `v_proj`).
    pub target_modules: Vec<String>,
}

impl LoraConfig {
    /// Checks rank, alpha, dropout and module names.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.r <= 0 {
            bail!("LoRA rank must be positive, got {}", self.r);
        }
        if self.alpha.is_nan() || self.alpha <= 0.0 {
            bail!("LoRA alpha must be positive, got {}", self.alpha);
        }
        if !(0.0..1.0).contains(&self.dropout) {
            bail!("LoRA dropout must be in [0, 1), got {}", self.dropout);
        }
        if self.target_modules.is_empty() {
            bail!(
                "LoRA needs at least one target module ({})",
                LORA_TARGETS.join(", ")
            );
        }
        for m in &self.target_modules {
            if !LORA_TARGETS.contains(&m.as_str()) {
                bail!(
                    "LoRA target module `{m}` is not a Llama projection ({})",
                    LORA_TARGETS.join(", ")
                );
            }
        }
        Ok(())
    }

    /// PEFT's `adapter_config.json`.
    pub fn peft_json(&self, base: &str) -> serde_json::Value {
        serde_json::json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base,
            "r": self.r,
            "lora_alpha": self.alpha,
            "lora_dropout": self.dropout,
            "target_modules": self.target_modules,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
        })
    }
}

/// One LoRA adapter: `B · A`, scaled.
#[derive(Debug)]
pub struct Lora {
    /// `lora_A.weight`, [r, in].
    pub a: Tensor,
    /// `lora_B.weight`, [out, r]; zeros at init, so a fresh adapter changes nothing.
    pub b: Tensor,
    scale: f64,
    dropout: f64,
}

/// A linear projection, maybe with an adapter.
#[derive(Debug)]
pub struct Linear {
    /// [out, in], as in the checkpoint.
    pub weight: Tensor,
    /// Optional bias.
    pub bias: Option<Tensor>,
    /// Optional LoRA adapter.
    pub lora: Option<Lora>,
}

/// How to run a forward pass.
#[derive(Debug, Clone, Copy)]
pub struct Mode {
    /// Training: dropout on.
    pub train: bool,
    /// Use the LoRA adapters (off: the frozen base model, e.g. DPO's reference).
    pub adapters: bool,
}

impl Mode {
    /// Inference with adapters.
    pub const EVAL: Mode = Mode {
        train: false,
        adapters: true,
    };
    /// Training with adapters.
    pub const TRAIN: Mode = Mode {
        train: true,
        adapters: true,
    };
    /// The base model without adapters.
    pub const BASE: Mode = Mode {
        train: false,
        adapters: false,
    };
}

impl Linear {
    fn forward(&self, x: &Tensor, mode: Mode) -> Tensor {
        let y = x.linear(&self.weight, self.bias.as_ref());
        match (&self.lora, mode.adapters) {
            (Some(l), true) => {
                let h = if l.dropout > 0.0 {
                    x.dropout(l.dropout, mode.train)
                } else {
                    x.shallow_clone()
                };
                y + h.linear::<Tensor>(&l.a, None).linear::<Tensor>(&l.b, None) * l.scale
            }
            _ => y,
        }
    }

    /// The weight with the adapter folded in.
    fn merged(&self) -> Tensor {
        match &self.lora {
            Some(l) => (&self.weight + l.b.matmul(&l.a) * l.scale).to_kind(self.weight.kind()),
            None => self.weight.shallow_clone(),
        }
    }
}

#[derive(Debug)]
struct Layer {
    input_norm: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    post_norm: Tensor,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// Per-layer keys and values of the tokens seen so far, preallocated and grown by doubling.
#[derive(Debug)]
pub struct KvCache {
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    len: i64,
}

impl KvCache {
    /// How many positions are cached.
    pub fn len(&self) -> i64 {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The model.
#[derive(Debug)]
pub struct Llama {
    /// Its configuration.
    pub config: LlamaConfig,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Option<Tensor>,
    inv_freq: Tensor,
    device: Device,
    kind: Kind,
    lora: Option<LoraConfig>,
}

/// The Hugging Face names and shapes a config implies, in checkpoint order.
pub fn expected_shapes(c: &LlamaConfig) -> Vec<(String, Vec<i64>)> {
    let (h, i, v) = (c.hidden_size, c.intermediate_size, c.vocab_size);
    let q_dim = c.num_attention_heads * c.head_dim;
    let kv_dim = c.num_key_value_heads * c.head_dim;
    let mut s = vec![("model.embed_tokens.weight".to_string(), vec![v, h])];
    for l in 0..c.num_hidden_layers {
        let p = format!("model.layers.{l}");
        s.push((format!("{p}.input_layernorm.weight"), vec![h]));
        s.push((format!("{p}.self_attn.q_proj.weight"), vec![q_dim, h]));
        s.push((format!("{p}.self_attn.k_proj.weight"), vec![kv_dim, h]));
        s.push((format!("{p}.self_attn.v_proj.weight"), vec![kv_dim, h]));
        s.push((format!("{p}.self_attn.o_proj.weight"), vec![h, q_dim]));
        if c.attention_bias {
            s.push((format!("{p}.self_attn.q_proj.bias"), vec![q_dim]));
            s.push((format!("{p}.self_attn.k_proj.bias"), vec![kv_dim]));
            s.push((format!("{p}.self_attn.v_proj.bias"), vec![kv_dim]));
            s.push((format!("{p}.self_attn.o_proj.bias"), vec![h]));
        }
        s.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
        s.push((format!("{p}.mlp.gate_proj.weight"), vec![i, h]));
        s.push((format!("{p}.mlp.up_proj.weight"), vec![i, h]));
        s.push((format!("{p}.mlp.down_proj.weight"), vec![h, i]));
        if c.mlp_bias {
            s.push((format!("{p}.mlp.gate_proj.bias"), vec![i]));
            s.push((format!("{p}.mlp.up_proj.bias"), vec![i]));
            s.push((format!("{p}.mlp.down_proj.bias"), vec![h]));
        }
    }
    s.push(("model.norm.weight".into(), vec![h]));
    if !c.tie_word_embeddings {
        s.push(("lm_head.weight".into(), vec![v, h]));
    }
    s
}

/// Reads every tensor of a checkpoint directory (single file or sharded with an index).
pub fn read_weights(dir: &Path) -> anyhow::Result<HashMap<String, Tensor>> {
    let index = dir.join("model.safetensors.index.json");
    let files: Vec<std::path::PathBuf> = if index.exists() {
        let text = std::fs::read_to_string(&index)
            .with_context(|| format!("reading {}", index.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", index.display()))?;
        let map = v
            .get("weight_map")
            .and_then(serde_json::Value::as_object)
            .with_context(|| format!("{} has no weight_map", index.display()))?;
        let mut shards: Vec<String> = map
            .values()
            .filter_map(|f| f.as_str().map(str::to_string))
            .collect();
        shards.sort();
        shards.dedup();
        shards.into_iter().map(|f| dir.join(f)).collect()
    } else {
        let single = dir.join("model.safetensors");
        if !single.exists() {
            bail!(
                "{} has neither model.safetensors nor model.safetensors.index.json",
                dir.display()
            );
        }
        vec![single]
    };
    let mut out = HashMap::new();
    for f in files {
        for (name, t) in
            Tensor::read_safetensors(&f).with_context(|| format!("reading {}", f.display()))?
        {
            out.insert(name, t);
        }
    }
    Ok(out)
}

impl Llama {
    /// Builds the model from named tensors, checking every name and shape.
    pub fn from_tensors(
        config: LlamaConfig,
        mut tensors: HashMap<String, Tensor>,
        device: Device,
        kind: Kind,
    ) -> anyhow::Result<Self> {
        let expected = expected_shapes(&config);
        let missing: Vec<&str> = expected
            .iter()
            .filter(|(n, _)| !tensors.contains_key(n))
            .map(|(n, _)| n.as_str())
            .collect();
        if !missing.is_empty() {
            bail!(
                "the checkpoint lacks {} tensor(s) the config implies, e.g. {}",
                missing.len(),
                missing
                    .iter()
                    .take(3)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        for (n, shape) in &expected {
            let got = tensors.get(n).map(Tensor::size).unwrap_or_default();
            if &got != shape {
                bail!("tensor {n} has shape {got:?}, the config implies {shape:?}");
            }
        }
        let mut take = |n: &str| -> Tensor {
            tensors
                .remove(n)
                .map(|t| t.to_kind(kind).to_device(device).detach())
                .unwrap_or_else(|| Tensor::zeros([0], (kind, device)))
        };
        let linear = |take: &mut dyn FnMut(&str) -> Tensor, p: &str, bias: bool| Linear {
            weight: take(&format!("{p}.weight")),
            bias: bias.then(|| take(&format!("{p}.bias"))),
            lora: None,
        };
        let embed = take("model.embed_tokens.weight");
        let mut layers = Vec::new();
        for l in 0..config.num_hidden_layers {
            let p = format!("model.layers.{l}");
            let ab = config.attention_bias;
            let mb = config.mlp_bias;
            layers.push(Layer {
                input_norm: take(&format!("{p}.input_layernorm.weight")),
                q: linear(&mut take, &format!("{p}.self_attn.q_proj"), ab),
                k: linear(&mut take, &format!("{p}.self_attn.k_proj"), ab),
                v: linear(&mut take, &format!("{p}.self_attn.v_proj"), ab),
                o: linear(&mut take, &format!("{p}.self_attn.o_proj"), ab),
                post_norm: take(&format!("{p}.post_attention_layernorm.weight")),
                gate: linear(&mut take, &format!("{p}.mlp.gate_proj"), mb),
                up: linear(&mut take, &format!("{p}.mlp.up_proj"), mb),
                down: linear(&mut take, &format!("{p}.mlp.down_proj"), mb),
            });
        }
        let norm = take("model.norm.weight");
        let lm_head = (!config.tie_word_embeddings).then(|| take("lm_head.weight"));
        let inv_freq = inv_freq(&config, device);
        Ok(Self {
            config,
            embed,
            layers,
            norm,
            lm_head,
            inv_freq,
            device,
            kind,
            lora: None,
        })
    }

    /// Loads `config.json` and the safetensors of a directory.
    pub fn load(dir: &Path, device: Device, kind: Kind) -> anyhow::Result<Self> {
        let config = LlamaConfig::load(dir)?;
        let tensors = read_weights(dir)?;
        Self::from_tensors(config, tensors, device, kind)
            .with_context(|| format!("loading the weights in {}", dir.display()))
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The compute dtype (bf16 on CUDA, f32 on CPU by default).
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The LoRA configuration, when adapters are attached.
    pub fn lora_config(&self) -> Option<&LoraConfig> {
        self.lora.as_ref()
    }

    fn linears(&self) -> Vec<(String, &Linear)> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            out.push((format!("{p}.self_attn.q_proj"), &l.q));
            out.push((format!("{p}.self_attn.k_proj"), &l.k));
            out.push((format!("{p}.self_attn.v_proj"), &l.v));
            out.push((format!("{p}.self_attn.o_proj"), &l.o));
            out.push((format!("{p}.mlp.gate_proj"), &l.gate));
            out.push((format!("{p}.mlp.up_proj"), &l.up));
            out.push((format!("{p}.mlp.down_proj"), &l.down));
        }
        out
    }

    /// The base weights under their Hugging Face names (handles sharing storage with the model).
    pub fn base_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![(
            "model.embed_tokens.weight".to_string(),
            self.embed.shallow_clone(),
        )];
        for (i, l) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            out.push((
                format!("{p}.input_layernorm.weight"),
                l.input_norm.shallow_clone(),
            ));
            out.push((
                format!("{p}.post_attention_layernorm.weight"),
                l.post_norm.shallow_clone(),
            ));
        }
        for (name, lin) in self.linears() {
            out.push((format!("{name}.weight"), lin.weight.shallow_clone()));
            if let Some(b) = &lin.bias {
                out.push((format!("{name}.bias"), b.shallow_clone()));
            }
        }
        out.push(("model.norm.weight".into(), self.norm.shallow_clone()));
        if let Some(h) = &self.lm_head {
            out.push(("lm_head.weight".into(), h.shallow_clone()));
        }
        out
    }

    /// The adapters under PEFT names (empty without LoRA).
    pub fn lora_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (name, lin) in self.linears() {
            if let Some(l) = &lin.lora {
                out.push((
                    format!("{PEFT_PREFIX}{name}.lora_A.weight"),
                    l.a.shallow_clone(),
                ));
                out.push((
                    format!("{PEFT_PREFIX}{name}.lora_B.weight"),
                    l.b.shallow_clone(),
                ));
            }
        }
        out
    }

    /// What training updates: the adapters with LoRA, every weight otherwise.
    pub fn trainable_tensors(&self) -> Vec<(String, Tensor)> {
        if self.lora.is_some() {
            self.lora_tensors()
        } else {
            self.base_tensors()
        }
    }

    /// The weights with every adapter folded in, under Hugging Face names, checkpoint order.
    pub fn merged_tensors(&self) -> Vec<(String, Tensor)> {
        let merged: HashMap<String, Tensor> = self
            .linears()
            .into_iter()
            .map(|(n, l)| (format!("{n}.weight"), l.merged()))
            .collect();
        let mut base: HashMap<String, Tensor> = self.base_tensors().into_iter().collect();
        expected_shapes(&self.config)
            .into_iter()
            .filter_map(|(n, _)| {
                let t = merged
                    .get(&n)
                    .map(Tensor::shallow_clone)
                    .or(base.remove(&n))?;
                Some((n, t))
            })
            .collect()
    }

    /// Attaches fresh adapters (A: Kaiming-uniform as PEFT, B: zeros) drawn from `seed`.
    pub fn add_lora(&mut self, cfg: &LoraConfig, seed: i64) -> anyhow::Result<()> {
        cfg.validate()?;
        let (device, kind) = (self.device, self.kind);
        crate::seeded(seed, || {
            for layer in &mut self.layers {
                let slots: [(&str, &mut Linear); 7] = [
                    ("q_proj", &mut layer.q),
                    ("k_proj", &mut layer.k),
                    ("v_proj", &mut layer.v),
                    ("o_proj", &mut layer.o),
                    ("gate_proj", &mut layer.gate),
                    ("up_proj", &mut layer.up),
                    ("down_proj", &mut layer.down),
                ];
                for (name, lin) in slots {
                    if !cfg.target_modules.iter().any(|m| m == name) {
                        continue;
                    }
                    let (out_f, in_f) = (lin.weight.size()[0], lin.weight.size()[1]);
                    let bound = 1.0 / (in_f as f64).sqrt();
                    let a = Tensor::zeros([cfg.r, in_f], (Kind::Float, device))
                        .uniform_(-bound, bound)
                        .to_kind(kind);
                    lin.lora = Some(Lora {
                        a,
                        b: Tensor::zeros([out_f, cfg.r], (kind, device)),
                        scale: cfg.alpha / cfg.r as f64,
                        dropout: cfg.dropout,
                    });
                }
            }
        });
        self.lora = Some(cfg.clone());
        Ok(())
    }

    /// Loads adapters written by [`Llama::lora_tensors`] (PEFT names) into attached adapters.
    pub fn load_lora(&mut self, tensors: &HashMap<String, Tensor>) -> anyhow::Result<()> {
        for (name, t) in self.lora_tensors() {
            let src = tensors
                .get(&name)
                .with_context(|| format!("the adapter file lacks {name}"))?;
            if src.size() != t.size() {
                bail!(
                    "adapter {name} has shape {:?}, expected {:?}",
                    src.size(),
                    t.size()
                );
            }
            tch::no_grad(|| {
                let mut t = t;
                t.copy_(&src.to_kind(self.kind).to_device(self.device));
            });
        }
        Ok(())
    }

    /// A cache for `batch` sequences with room for `capacity` positions (grows if exceeded).
    pub fn new_cache(&self, batch: i64, capacity: i64) -> KvCache {
        let c = &self.config;
        let shape = [batch, c.num_key_value_heads, capacity.max(1), c.head_dim];
        let mk = || {
            (0..c.num_hidden_layers)
                .map(|_| Tensor::zeros(shape, (self.kind, self.device)))
                .collect::<Vec<_>>()
        };
        KvCache {
            k: mk(),
            v: mk(),
            len: 0,
        }
    }

    fn rms_norm(&self, x: &Tensor, w: &Tensor) -> Tensor {
        let xf = x.to_kind(Kind::Float);
        let var = xf.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float);
        let normed = xf * (var + self.config.rms_norm_eps).rsqrt();
        w * normed.to_kind(x.kind())
    }

    fn rope(&self, offset: i64, len: i64) -> (Tensor, Tensor) {
        let pos = Tensor::arange_start(offset, offset + len, (Kind::Float, self.device));
        let freqs = pos.unsqueeze(1) * self.inv_freq.unsqueeze(0);
        let emb = Tensor::cat(&[&freqs, &freqs], -1);
        (emb.cos().to_kind(self.kind), emb.sin().to_kind(self.kind))
    }

    /// Runs the model on `ids` [batch, len]; with a cache, the tokens continue the cached ones
    /// and are appended. Returns the final hidden states [batch, len, hidden].
    pub fn hidden(&self, ids: &Tensor, mut cache: Option<&mut KvCache>, mode: Mode) -> Tensor {
        let c = &self.config;
        let (b, t) = (ids.size()[0], ids.size()[1]);
        let offset = cache.as_ref().map_or(0, |c| c.len);
        let (cos, sin) = self.rope(offset, t);
        let (nh, nkv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
        let groups = c.kv_groups();
        let total = offset + t;
        let mask = (offset > 0 && t > 1)
            .then(|| Tensor::ones([t, total], (Kind::Bool, self.device)).tril(offset));
        let mut x = Tensor::embedding(&self.embed, ids, -1, false, false);
        if let Some(cache) = cache.as_deref_mut() {
            let cap = cache.k.first().map_or(0, |k| k.size()[2]);
            if total > cap {
                let grow = total.max(cap * 2);
                for kv in cache.k.iter_mut().chain(cache.v.iter_mut()) {
                    let extra = Tensor::zeros([b, nkv, grow - cap, hd], (self.kind, self.device));
                    *kv = Tensor::cat(&[&*kv, &extra], 2);
                }
            }
        }
        for (li, layer) in self.layers.iter().enumerate() {
            let h = self.rms_norm(&x, &layer.input_norm);
            let q = layer
                .q
                .forward(&h, mode)
                .view([b, t, nh, hd])
                .transpose(1, 2);
            let k = layer
                .k
                .forward(&h, mode)
                .view([b, t, nkv, hd])
                .transpose(1, 2);
            let v = layer
                .v
                .forward(&h, mode)
                .view([b, t, nkv, hd])
                .transpose(1, 2);
            let q = &q * &cos + rotate_half(&q) * &sin;
            let k = &k * &cos + rotate_half(&k) * &sin;
            let (k, v) = match cache.as_deref_mut() {
                Some(cache) => {
                    cache.k[li].narrow(2, offset, t).copy_(&k);
                    cache.v[li].narrow(2, offset, t).copy_(&v);
                    (
                        cache.k[li].narrow(2, 0, total),
                        cache.v[li].narrow(2, 0, total),
                    )
                }
                None => (k, v),
            };
            // Grouped-query attention inside SDPA (no repeated copies of K and V).
            let attn = Tensor::scaled_dot_product_attention(
                &q,
                &k,
                &v,
                mask.as_ref(),
                0.0,
                mask.is_none() && t > 1,
                None,
                groups > 1,
            );
            let attn = attn.transpose(1, 2).reshape([b, t, nh * hd]);
            x = &x + layer.o.forward(&attn, mode);
            let h = self.rms_norm(&x, &layer.post_norm);
            let act = layer.gate.forward(&h, mode).silu() * layer.up.forward(&h, mode);
            x = &x + layer.down.forward(&act, mode);
        }
        if let Some(cache) = cache {
            cache.len = total;
        }
        self.rms_norm(&x, &self.norm)
    }

    /// Projects hidden states to vocabulary logits (in the compute dtype).
    pub fn logits(&self, hidden: &Tensor) -> Tensor {
        hidden.linear::<Tensor>(self.lm_head.as_ref().unwrap_or(&self.embed), None)
    }

    /// Logits for every position of `ids` [batch, len] → [batch, len, vocab].
    pub fn forward(&self, ids: &Tensor, cache: Option<&mut KvCache>, mode: Mode) -> Tensor {
        self.logits(&self.hidden(ids, cache, mode))
    }
}

fn rotate_half(x: &Tensor) -> Tensor {
    let half = x.size()[3] / 2;
    Tensor::cat(&[-x.narrow(3, half, half), x.narrow(3, 0, half)], -1)
}

/// RoPE inverse frequencies, computed in f32 exactly as `transformers` does.
fn inv_freq(c: &LlamaConfig, device: Device) -> Tensor {
    let dim = c.head_dim;
    let exps = Tensor::arange_start_step(0, dim, 2, (Kind::Int64, Device::Cpu))
        .to_kind(Kind::Float)
        / dim as f64;
    let base = Tensor::from(c.rope_theta as f32);
    let inv = base.pow(&exps).reciprocal();
    let inv = match c.rope_scaling {
        RopeScaling::Default => inv,
        RopeScaling::Linear { factor } => inv / factor,
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings: old,
        } => {
            let low_wavelen = old / low_freq_factor;
            let high_wavelen = old / high_freq_factor;
            let wavelen = inv.reciprocal() * (2.0 * std::f64::consts::PI);
            let scaled = inv.where_self(&wavelen.le(low_wavelen), &(&inv / factor));
            let smooth = ((wavelen.reciprocal() * old) - low_freq_factor)
                / (high_freq_factor - low_freq_factor);
            let smoothed = (smooth.ones_like() - &smooth) * &scaled / factor + &smooth * &scaled;
            let medium = wavelen
                .ge(high_wavelen)
                .logical_and(&wavelen.le(low_wavelen));
            smoothed.where_self(&medium, &scaled)
        }
    };
    inv.to_device(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(dir: &Path) -> Llama {
        crate::model::init::TinyLlama {
            init_std: 0.2,
            ..crate::model::init::TinyLlama::default()
        }
        .write(dir, 3)
        .unwrap();
        Llama::load(dir, Device::Cpu, Kind::Float).unwrap()
    }

    #[test]
    fn merged_adapters_give_the_same_logits_and_base_mode_ignores_them() {
        let d = tempfile::tempdir().unwrap();
        let mut m = tiny(d.path());
        let ids = Tensor::from_slice(&[1i64, 40, 41, 42, 43, 7]).view([1, 6]);
        let base = tch::no_grad(|| m.forward(&ids, None, Mode::EVAL));
        let cfg = LoraConfig {
            r: 4,
            alpha: 8.0,
            dropout: 0.1,
            target_modules: vec!["q_proj".into(), "down_proj".into()],
        };
        m.add_lora(&cfg, 1).unwrap();
        let fresh = tch::no_grad(|| m.forward(&ids, None, Mode::EVAL));
        assert!(fresh.allclose(&base, 1e-6, 1e-6, false), "B = 0: no change");
        tch::no_grad(|| {
            for (_, t) in m.lora_tensors() {
                let mut t = t;
                let _ = t.normal_(0.0, 0.3);
            }
        });
        let adapted = tch::no_grad(|| m.forward(&ids, None, Mode::EVAL));
        assert!(!adapted.allclose(&base, 1e-3, 1e-3, false));
        let as_base = tch::no_grad(|| m.forward(&ids, None, Mode::BASE));
        assert!(as_base.allclose(&base, 1e-6, 1e-6, false));
        let merged = Llama::from_tensors(
            m.config.clone(),
            m.merged_tensors().into_iter().collect(),
            Device::Cpu,
            Kind::Float,
        )
        .unwrap();
        let folded = tch::no_grad(|| merged.forward(&ids, None, Mode::EVAL));
        let diff = (folded - adapted).abs().max().double_value(&[]);
        assert!(diff < 1e-4, "merged differs by {diff}");
        assert_eq!(m.lora_tensors().len(), 2 * 2 * 2);
    }

    #[test]
    fn a_checkpoint_that_does_not_fit_the_config_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let m = tiny(d.path());
        let mut tensors: HashMap<String, Tensor> = m.base_tensors().into_iter().collect();
        tensors.remove("model.layers.1.mlp.up_proj.weight");
        let err = Llama::from_tensors(m.config.clone(), tensors, Device::Cpu, Kind::Float)
            .unwrap_err()
            .to_string();
        assert!(err.contains("model.layers.1.mlp.up_proj.weight"), "{err}");
        let mut tensors: HashMap<String, Tensor> = m.base_tensors().into_iter().collect();
        tensors.insert(
            "model.norm.weight".into(),
            Tensor::ones([3], (Kind::Float, Device::Cpu)),
        );
        let err = Llama::from_tensors(m.config.clone(), tensors, Device::Cpu, Kind::Float)
            .unwrap_err()
            .to_string();
        assert!(err.contains("shape"), "{err}");
        let bad = LoraConfig {
            r: 4,
            alpha: 8.0,
            dropout: 0.0,
            target_modules: vec!["lm_head".into()],
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn sharded_checkpoints_load_through_their_index() {
        let d = tempfile::tempdir().unwrap();
        let m = tiny(d.path());
        let all = m.base_tensors();
        let (a, b) = all.split_at(all.len() / 2);
        let s = tempfile::tempdir().unwrap();
        Tensor::write_safetensors(a, s.path().join("model-00001-of-00002.safetensors")).unwrap();
        Tensor::write_safetensors(b, s.path().join("model-00002-of-00002.safetensors")).unwrap();
        let map: serde_json::Map<String, serde_json::Value> = a
            .iter()
            .map(|(n, _)| (n.clone(), "model-00001-of-00002.safetensors".into()))
            .chain(
                b.iter()
                    .map(|(n, _)| (n.clone(), "model-00002-of-00002.safetensors".into())),
            )
            .collect();
        std::fs::write(
            s.path().join("model.safetensors.index.json"),
            serde_json::json!({"metadata": {}, "weight_map": map}).to_string(),
        )
        .unwrap();
        std::fs::copy(d.path().join("config.json"), s.path().join("config.json")).unwrap();
        let sharded = Llama::load(s.path(), Device::Cpu, Kind::Float).unwrap();
        let ids = Tensor::from_slice(&[1i64, 5, 9]).view([1, 3]);
        let (x, y) = tch::no_grad(|| {
            (
                m.forward(&ids, None, Mode::EVAL),
                sharded.forward(&ids, None, Mode::EVAL),
            )
        });
        assert!(x.equal(&y));
    }
}
