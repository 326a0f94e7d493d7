//! `train`: supervised fine-tuning, full or LoRA, with checkpoints that survive a kill.
//!
//! Determinism: the data order of every epoch and the dropout stream of every micro-batch are
//! functions of `(seed, micro-batch index)`, and a checkpoint holds the trainable weights, the
//! whole optimizer state and the step. A run killed at any point and restarted with the same
//! command resumes from its newest checkpoint and ends where an uninterrupted run ends.

pub mod data;
pub mod dpo;
pub mod eval;
pub mod optim;
pub mod report;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};

use crate::model::generate::Rng;
use crate::model::tokenizer::Tok;
use crate::model::{Llama, LoraConfig, Mode};
use data::Example;
use optim::{AdamW, AdamWConfig, lr_at};

/// Full fine-tuning or LoRA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Every weight is trained.
    Full,
    /// Low-rank adapters on the target modules; the base is frozen.
    Lora,
}

/// Flags of `train` (and, shared, of `dpo`).
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct TrainArgs {
    /// The base model directory (Hugging Face layout).
    #[arg(long)]
    pub model: PathBuf,
    /// Training data, JSONL (`text`, `prompt`+`completion`, or `messages`).
    #[arg(long)]
    pub data: PathBuf,
    /// Held-out data for evaluation after training (same shapes).
    #[arg(long)]
    pub eval_data: Option<PathBuf>,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// The sha256 the base model's weights must have (lowercase hex, as `baseModel.sha256`):
    /// training refuses to start on any other (`BaseModelDigestMismatch`).
    #[arg(long)]
    pub expect_base_sha256: Option<String>,
    /// full or lora.
    #[arg(long, value_enum, default_value = "lora")]
    pub method: Method,
    /// LoRA rank.
    #[arg(long, default_value_t = 8)]
    pub lora_r: i64,
    /// LoRA alpha (scale = alpha / r).
    #[arg(long, default_value_t = 16.0)]
    pub lora_alpha: f64,
    /// LoRA dropout.
    #[arg(long, default_value_t = 0.0)]
    pub lora_dropout: f64,
    /// LoRA target modules, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "q_proj,k_proj,v_proj,o_proj"
    )]
    pub lora_targets: Vec<String>,
    /// Passes over the data (ignored when --max-steps is set).
    #[arg(long, default_value_t = 1)]
    pub epochs: u64,
    /// Optimizer steps to run (overrides --epochs).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Sequences per micro-batch.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f64,
    /// Linear warmup steps.
    #[arg(long, default_value_t = 0)]
    pub warmup_steps: u64,
    /// The cosine schedule ends at this fraction of --lr.
    #[arg(long, default_value_t = 0.0)]
    pub min_lr_ratio: f64,
    /// AdamW decoupled weight decay.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (0: no clipping).
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// Longest sequence (longer examples are truncated).
    #[arg(long, default_value_t = 512)]
    pub max_seq_len: usize,
    /// Seed of data order, adapter init and dropout.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Write a checkpoint every N steps (0: never).
    #[arg(long, default_value_t = 100)]
    pub checkpoint_every: u64,
    /// How many checkpoints to keep.
    #[arg(long, default_value_t = 2)]
    pub keep_checkpoints: usize,
    /// Checkpoint directory (default: OUT/checkpoints).
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// With LoRA, also write the merged full model.
    #[arg(long)]
    pub merge: bool,
    /// auto (CUDA when present), cpu, or cuda[:N].
    #[arg(long, default_value = "auto")]
    pub device: String,
}

impl TrainArgs {
    /// The LoRA settings of these flags.
    pub fn lora_config(&self) -> LoraConfig {
        LoraConfig {
            r: self.lora_r,
            alpha: self.lora_alpha,
            dropout: self.lora_dropout,
            target_modules: self.lora_targets.clone(),
        }
    }
}

/// What a step reports.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// Completed optimizer steps.
    pub step: u64,
    /// Planned steps.
    pub total_steps: u64,
    /// Mean loss of this step's micro-batches.
    pub loss: f64,
    /// Tokens per second since this process started training.
    pub tokens_per_second: f64,
    /// The learning rate used.
    pub lr: f64,
}

/// The outcome, also written to `OUT/result.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrainResult {
    /// sha256 of the weights file written (`model.safetensors` or `adapter_model.safetensors`).
    pub digest: String,
    /// The file the digest is of.
    pub weights_file: String,
    /// sha256 of the base weights (unchanged by LoRA training).
    pub base_digest: String,
    pub method: Method,
    pub steps: u64,
    /// The step this process started from (0, or a checkpoint's step).
    pub resumed_from: u64,
    pub final_loss: f64,
    pub trainable_parameters: i64,
    pub train_tokens: i64,
    pub tokens_per_second: f64,
    /// Evaluation metrics on --eval-data, when given.
    #[serde(default)]
    pub metrics: std::collections::BTreeMap<String, f64>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct CheckpointState {
    step: u64,
    total_steps: u64,
    seed: u64,
    method: Method,
    data_digest: String,
    base_digest: String,
    last_loss: f64,
    train_tokens: i64,
}

/// Picks the device from a flag.
pub fn parse_device(s: &str) -> anyhow::Result<Device> {
    Ok(match s {
        "auto" => crate::device::best(),
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        other => match other.strip_prefix("cuda:").map(str::parse) {
            Some(Ok(n)) => Device::Cuda(n),
            _ => bail!("--device takes auto, cpu, cuda or cuda:N, got `{other}`"),
        },
    })
}

/// bf16 on CUDA, f32 on the CPU.
pub fn compute_kind(device: Device) -> Kind {
    if device.is_cuda() {
        Kind::BFloat16
    } else {
        Kind::Float
    }
}

/// sha256 of a file, hex.
pub fn file_digest(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex(&Sha256::digest(&bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 over a checkpoint's weight files (the index's shards, in name order).
pub fn weights_digest(dir: &Path) -> anyhow::Result<String> {
    let single = dir.join("model.safetensors");
    if single.exists() {
        return file_digest(&single);
    }
    let mut shards: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    shards.sort();
    let mut h = Sha256::new();
    for s in shards {
        h.update(std::fs::read(&s).with_context(|| format!("reading {}", s.display()))?);
    }
    Ok(hex(&h.finalize()))
}

/// Copies config and tokenizer files of the base model next to the output.
pub fn copy_model_files(from: &Path, to: &Path) -> anyhow::Result<()> {
    for f in [
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "chat_template.jinja",
    ] {
        let src = from.join(f);
        if src.exists() {
            std::fs::copy(&src, to.join(f)).with_context(|| format!("copying {f}"))?;
        }
    }
    Ok(())
}

/// Writes tensors to `path` atomically (temp file, then rename).
pub fn write_safetensors_atomic(tensors: &[(String, Tensor)], path: &Path) -> anyhow::Result<()> {
    let tmp = path.with_extension("safetensors.tmp");
    let cpu: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.detach().to_device(Device::Cpu).contiguous()))
        .collect();
    Tensor::write_safetensors(&cpu, &tmp).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// Loads the model and tokenizer of a directory onto `device`.
pub fn load_model(dir: &Path, device: Device) -> anyhow::Result<(Llama, Tok)> {
    let model = Llama::load(dir, device, compute_kind(device))?;
    let tok = Tok::load(dir, &model.config.eos_token_ids)?;
    if tok.vocab_size() as i64 > model.config.vocab_size {
        bail!(
            "the tokenizer has {} tokens but the model's vocab_size is {}",
            tok.vocab_size(),
            model.config.vocab_size
        );
    }
    Ok((model, tok))
}

/// Deterministic order of example indices for `epoch`.
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = Rng::new(seed ^ epoch.wrapping_mul(0xA24B_AED4_963E_E407));
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// The examples of micro-batch number `micro`.
pub fn micro_batch(examples: &[Example], batch: usize, seed: u64, micro: u64) -> Vec<&Example> {
    let per_epoch = examples.len().div_ceil(batch).max(1) as u64;
    let epoch = micro / per_epoch;
    let within = (micro % per_epoch) as usize;
    let order = epoch_order(examples.len(), seed, epoch);
    order
        .iter()
        .skip(within * batch)
        .take(batch)
        .map(|&i| &examples[i])
        .collect()
}

fn checkpoints(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let step = e
                .file_name()
                .to_str()?
                .strip_prefix("step-")?
                .parse()
                .ok()?;
            e.path()
                .join("state.json")
                .exists()
                .then(|| (step, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// Runs `train`. `on_step` sees every optimizer step.
pub fn run(args: &TrainArgs, on_step: &mut dyn FnMut(&StepReport)) -> anyhow::Result<TrainResult> {
    if args.batch_size == 0 || args.grad_accum == 0 {
        bail!("--batch-size and --grad-accum must be at least 1");
    }
    let device = parse_device(&args.device)?;
    let base_digest = weights_digest(&args.model)?;
    if let Some(want) = &args.expect_base_sha256
        && want.trim_start_matches("sha256:") != base_digest
    {
        bail!(
            "BaseModelDigestMismatch: the base model at {} has weights with sha256 {base_digest}, not {want} (spec.baseModel.sha256); point baseModel.uri at the model you meant or correct the digest",
            args.model.display()
        );
    }
    let (mut model, tok) = load_model(&args.model, device)?;
    let examples = data::load_sft(&args.data, &tok, args.max_seq_len)?;
    let data_digest = file_digest(&args.data)?;
    let per_step = args.batch_size * args.grad_accum;
    let total_steps = match args.max_steps {
        Some(s) => s,
        None => examples.len().div_ceil(per_step) as u64 * args.epochs,
    };
    if total_steps == 0 {
        bail!("nothing to do: 0 steps (check --epochs / --max-steps)");
    }
    if args.method == Method::Lora {
        model.add_lora(&args.lora_config(), args.seed as i64)?;
    }
    let mut opt = AdamW::new(
        model.trainable_tensors(),
        AdamWConfig::new(args.lr, args.weight_decay),
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let ckpt_dir = args
        .checkpoint_dir
        .clone()
        .unwrap_or_else(|| args.out.join("checkpoints"));
    let mut state = CheckpointState {
        step: 0,
        total_steps,
        seed: args.seed,
        method: args.method,
        data_digest,
        base_digest: base_digest.clone(),
        last_loss: f64::NAN,
        train_tokens: 0,
    };
    if let Some((step, path)) = checkpoints(&ckpt_dir).pop() {
        let saved: CheckpointState = serde_json::from_str(
            &std::fs::read_to_string(path.join("state.json"))
                .with_context(|| format!("reading {}/state.json", path.display()))?,
        )
        .with_context(|| format!("{}/state.json is corrupt", path.display()))?;
        if (
            saved.total_steps,
            saved.seed,
            saved.method,
            &saved.data_digest,
            &saved.base_digest,
        ) != (
            total_steps,
            args.seed,
            args.method,
            &state.data_digest,
            &base_digest,
        ) {
            bail!(
                "{} holds a checkpoint of a different run (other data, base model, seed, method or step count); \
                 remove it or pass another --checkpoint-dir",
                ckpt_dir.display()
            );
        }
        let weights: std::collections::HashMap<String, Tensor> =
            Tensor::read_safetensors(path.join("trainable.safetensors"))?
                .into_iter()
                .collect();
        tch::no_grad(|| -> anyhow::Result<()> {
            for (name, t) in model.trainable_tensors() {
                let src = weights
                    .get(&name)
                    .with_context(|| format!("checkpoint step {step} lacks {name}"))?;
                let mut t = t;
                t.copy_(&src.to_device(device));
            }
            Ok(())
        })?;
        let opt_state: std::collections::HashMap<String, Tensor> =
            Tensor::read_safetensors(path.join("optimizer.safetensors"))?
                .into_iter()
                .collect();
        opt.load_state(&opt_state, step)?;
        state = saved;
        eprintln!(
            "resuming from checkpoint {} (step {step}/{total_steps})",
            path.display()
        );
    }
    let resumed_from = state.step;
    let started = Instant::now();
    let mut tokens_here: i64 = 0;
    while state.step < total_steps {
        opt.zero_grad();
        let mut loss_sum = 0.0;
        for a in 0..args.grad_accum {
            let micro = state.step * args.grad_accum as u64 + a as u64;
            let rows: Vec<(&[i64], &[i64])> =
                micro_batch(&examples, args.batch_size, args.seed, micro)
                    .into_iter()
                    .map(|e| (e.ids.as_slice(), e.labels.as_slice()))
                    .collect();
            let batch = data::collate(&rows, tok.pad_id(), device);
            tch::manual_seed((args.seed.wrapping_mul(1_000_003).wrapping_add(micro)) as i64);
            let logits = model.forward(&batch.ids, None, Mode::TRAIN);
            let loss = data::lm_loss(&logits, &batch.labels);
            opt.backward(&(&loss / args.grad_accum as f64))?;
            loss_sum += loss.double_value(&[]);
            tokens_here += batch.tokens;
        }
        opt.clip_grad_norm(args.max_grad_norm);
        let lr = lr_at(
            state.step + 1,
            total_steps,
            args.warmup_steps,
            args.lr,
            args.min_lr_ratio,
        );
        opt.apply(lr);
        state.step += 1;
        state.last_loss = loss_sum / args.grad_accum as f64;
        if !state.last_loss.is_finite() {
            bail!(
                "the loss became {} at step {} — lower --lr or raise --warmup-steps",
                state.last_loss,
                state.step
            );
        }
        let elapsed = started.elapsed().as_secs_f64().max(1e-9);
        on_step(&StepReport {
            step: state.step,
            total_steps,
            loss: state.last_loss,
            tokens_per_second: tokens_here as f64 / elapsed,
            lr,
        });
        if args.checkpoint_every > 0
            && state.step.is_multiple_of(args.checkpoint_every)
            && state.step < total_steps
        {
            state.train_tokens += tokens_here;
            save_checkpoint(&ckpt_dir, &model, &opt, &state, args.keep_checkpoints)?;
            state.train_tokens -= tokens_here;
        }
    }
    state.train_tokens += tokens_here;
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let (digest, weights_file) = write_output(args, &model)?;
    let mut result = TrainResult {
        digest,
        weights_file,
        base_digest,
        method: args.method,
        steps: state.step,
        resumed_from,
        final_loss: state.last_loss,
        trainable_parameters: opt.numel(),
        train_tokens: state.train_tokens,
        tokens_per_second: tokens_here as f64 / elapsed,
        metrics: Default::default(),
    };
    if let Some(eval_path) = &args.eval_data {
        let examples = data::load_sft(eval_path, &tok, args.max_seq_len)?;
        result.metrics =
            crate::train::eval::evaluate(&model, &tok, &examples, args.batch_size)?.into_map();
    }
    std::fs::write(
        args.out.join("result.json"),
        serde_json::to_string_pretty(&result)? + "\n",
    )
    .context("writing result.json")?;
    Ok(result)
}

fn save_checkpoint(
    dir: &Path,
    model: &Llama,
    opt: &AdamW,
    state: &CheckpointState,
    keep: usize,
) -> anyhow::Result<()> {
    let final_dir = dir.join(format!("step-{:08}", state.step));
    let tmp = dir.join(format!(".tmp-step-{:08}", state.step));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    write_safetensors_atomic(
        &model.trainable_tensors(),
        &tmp.join("trainable.safetensors"),
    )?;
    write_safetensors_atomic(&opt.state_tensors(), &tmp.join("optimizer.safetensors"))?;
    std::fs::write(tmp.join("state.json"), serde_json::to_string_pretty(state)?)
        .context("writing state.json")?;
    let _ = std::fs::remove_dir_all(&final_dir);
    std::fs::rename(&tmp, &final_dir)
        .with_context(|| format!("renaming to {}", final_dir.display()))?;
    let all = checkpoints(dir);
    for (_, old) in all.iter().take(all.len().saturating_sub(keep.max(1))) {
        let _ = std::fs::remove_dir_all(old);
    }
    Ok(())
}

/// Writes the trained weights; returns (sha256, file name).
pub(crate) fn write_output(args: &TrainArgs, model: &Llama) -> anyhow::Result<(String, String)> {
    copy_model_files(&args.model, &args.out)?;
    let (tensors, file) = match (args.method, model.lora_config()) {
        (Method::Lora, Some(cfg)) => {
            let base = args.model.display().to_string();
            std::fs::write(
                args.out.join("adapter_config.json"),
                serde_json::to_string_pretty(&cfg.peft_json(&base))? + "\n",
            )
            .context("writing adapter_config.json")?;
            if args.merge {
                let merged_dir = args.out.join("merged");
                std::fs::create_dir_all(&merged_dir)?;
                copy_model_files(&args.model, &merged_dir)?;
                write_safetensors_atomic(
                    &cast_like_base(model.merged_tensors(), &args.model)?,
                    &merged_dir.join("model.safetensors"),
                )?;
            }
            (model.lora_tensors(), "adapter_model.safetensors")
        }
        _ => (
            cast_like_base(model.base_tensors(), &args.model)?,
            "model.safetensors",
        ),
    };
    let path = args.out.join(file);
    write_safetensors_atomic(&tensors, &path)?;
    Ok((file_digest(&path)?, file.to_string()))
}

/// Writes weights in the dtype of the base checkpoint (`torch_dtype`), f32 when unstated.
fn cast_like_base(
    tensors: Vec<(String, Tensor)>,
    base: &Path,
) -> anyhow::Result<Vec<(String, Tensor)>> {
    let text = std::fs::read_to_string(base.join("config.json")).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let kind = match v
        .get("torch_dtype")
        .or_else(|| v.get("dtype"))
        .and_then(|d| d.as_str())
    {
        Some("bfloat16") => Kind::BFloat16,
        Some("float16") => Kind::Half,
        _ => Kind::Float,
    };
    Ok(tensors
        .into_iter()
        .map(|(n, t)| (n, t.detach().to_kind(kind)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_orders_are_permutations_that_differ_by_epoch() {
        let a = epoch_order(50, 1, 0);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(50, 1, 0));
        assert_ne!(a, epoch_order(50, 1, 1));
        assert_ne!(a, epoch_order(50, 2, 0));
    }

    #[test]
    fn devices_parse() {
        assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
        assert_eq!(parse_device("cuda:1").unwrap(), Device::Cuda(1));
        assert!(parse_device("tpu").is_err());
    }
}
