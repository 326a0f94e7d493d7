//! `eval`: loss, perplexity and task metrics on a held-out split, judged against targets.
//!
//! Task metrics on prompt→answer examples (greedy decoding):
//! - `exactMatch`: the generated answer equals the expected one (surrounding whitespace
//!   ignored);
//! - `accuracy`: equal after normalization (case, punctuation and spacing ignored).

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::model::generate::{Generation, SamplingParams};
use crate::model::tokenizer::Tok;
use crate::model::{Llama, Mode};
use crate::train::data::{self, Example};

/// What an evaluation measured.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Metrics {
    /// Mean next-token loss over labelled tokens.
    pub loss: f64,
    /// exp(loss).
    pub perplexity: f64,
    /// Fraction of prompt→answer examples answered exactly (None without such examples).
    pub exact_match: Option<f64>,
    /// Fraction answered right up to case/punctuation/spacing.
    pub accuracy: Option<f64>,
    /// Examples evaluated.
    pub examples: usize,
}

impl Metrics {
    /// By the metric names of the rubric (`loss`, `perplexity`, `exactMatch`, `accuracy`).
    pub fn into_map(self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::from([
            ("loss".to_string(), self.loss),
            ("perplexity".to_string(), self.perplexity),
        ]);
        if let Some(v) = self.exact_match {
            m.insert("exactMatch".into(), v);
        }
        if let Some(v) = self.accuracy {
            m.insert("accuracy".into(), v);
        }
        m
    }
}

fn normalize(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Evaluates `model` on `examples`.
pub fn evaluate(
    model: &Llama,
    tok: &Tok,
    examples: &[Example],
    batch_size: usize,
) -> anyhow::Result<Metrics> {
    if examples.is_empty() {
        bail!("no evaluation examples");
    }
    let mut loss_sum = 0.0;
    let mut label_tokens = 0i64;
    tch::no_grad(|| {
        for chunk in examples.chunks(batch_size.max(1)) {
            let rows: Vec<(&[i64], &[i64])> = chunk
                .iter()
                .map(|e| (e.ids.as_slice(), e.labels.as_slice()))
                .collect();
            let b = data::collate(&rows, tok.pad_id(), model.device());
            let logits = model.forward(&b.ids, None, Mode::EVAL);
            // Token-weighted: the mean over the batch times its labelled (shifted) tokens.
            let n = b
                .labels
                .narrow(1, 1, b.labels.size()[1] - 1)
                .ne(data::IGNORE)
                .sum(tch::Kind::Int64)
                .int64_value(&[]);
            loss_sum += data::lm_loss(&logits, &b.labels).double_value(&[]) * n as f64;
            label_tokens += n;
        }
    });
    let loss = loss_sum / label_tokens.max(1) as f64;
    let tasks: Vec<&(Vec<i64>, String)> = examples
        .iter()
        .filter_map(|e| e.prompt_answer.as_ref())
        .collect();
    let (mut exact, mut close) = (0usize, 0usize);
    for (prompt, answer) in &tasks {
        let prompt_ids = prompt.clone();
        let want = tok.encode(answer, false)?.len();
        let params = SamplingParams {
            max_tokens: want + 8,
            temperature: 0.0,
            top_p: 1.0,
            seed: Some(0),
            stop: vec![],
        };
        let got = Generation::new(model, prompt_ids, params)
            .context("evaluating an example")?
            .run(model, tok)?;
        if got.text.trim() == answer.trim() {
            exact += 1;
        }
        if normalize(&got.text) == normalize(answer) {
            close += 1;
        }
    }
    let frac = |k: usize| (!tasks.is_empty()).then(|| k as f64 / tasks.len() as f64);
    Ok(Metrics {
        loss,
        perplexity: loss.exp(),
        exact_match: frac(exact),
        accuracy: frac(close),
        examples: examples.len(),
    })
}

/// A target: a metric, a direction, a threshold — parsed from `exactMatch>=0.8` or
/// `loss<=1.5`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub name: String,
    /// `Maximize` (value ≥ threshold) or `Minimize` (value ≤ threshold).
    pub direction: String,
    pub threshold: f64,
}

impl std::str::FromStr for Target {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let (name, direction, value) = if let Some((n, v)) = s.split_once(">=") {
            (n, "Maximize", v)
        } else if let Some((n, v)) = s.split_once("<=") {
            (n, "Minimize", v)
        } else {
            bail!("a target reads NAME>=VALUE (maximize) or NAME<=VALUE (minimize), got `{s}`");
        };
        Ok(Self {
            name: name.trim().to_string(),
            direction: direction.to_string(),
            threshold: value
                .trim()
                .parse()
                .with_context(|| format!("`{value}` in target `{s}` is not a number"))?,
        })
    }
}

/// One target's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    #[serde(flatten)]
    pub target: Target,
    /// The measured value (None: the metric was not measured, which fails the target).
    pub value: Option<f64>,
    pub met: bool,
}

/// Judges metrics against targets.
pub fn judge(metrics: &BTreeMap<String, f64>, targets: &[Target]) -> Vec<Verdict> {
    targets
        .iter()
        .map(|t| {
            let value = metrics.get(&t.name).copied();
            let met = value.is_some_and(|v| {
                if t.direction == "Maximize" {
                    v >= t.threshold
                } else {
                    v <= t.threshold
                }
            });
            Verdict {
                target: t.clone(),
                value,
                met,
            }
        })
        .collect()
}

/// Flags of `eval`.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// The model directory (a full model, or a LoRA output with adapter_config.json).
    #[arg(long)]
    pub model: std::path::PathBuf,
    /// Held-out JSONL.
    #[arg(long)]
    pub data: std::path::PathBuf,
    /// Targets, e.g. `exactMatch>=0.8` or `loss<=1.5` (repeatable).
    #[arg(long = "target")]
    pub targets: Vec<Target>,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Longest sequence.
    #[arg(long, default_value_t = 512)]
    pub max_seq_len: usize,
    /// Where to write the JSON result (also printed).
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// Also evaluate this model (e.g. the base before fine-tuning) on the same data, as
    /// `baseline` in the result: what the fine-tuning changed.
    #[arg(long)]
    pub baseline: Option<std::path::PathBuf>,
    /// auto, cpu, or cuda[:N].
    #[arg(long, default_value = "auto")]
    pub device: String,
}

/// Loads a model directory: a full model, or LoRA adapters (`adapter_config.json`) on the base
/// named there.
pub fn load_any(dir: &std::path::Path, device: tch::Device) -> anyhow::Result<(Llama, Tok)> {
    load_on(dir, None, device)
}

/// [`load_any`], LoRA adapters put on `base` when given instead of the base their
/// `adapter_config.json` names — which whoever wrote the adapters chose.
pub fn load_on(
    dir: &std::path::Path,
    base: Option<&std::path::Path>,
    device: tch::Device,
) -> anyhow::Result<(Llama, Tok)> {
    let adapter = dir.join("adapter_config.json");
    if !adapter.exists() {
        return crate::train::load_model(dir, device);
    }
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&adapter).context("reading adapter_config.json")?,
    )
    .context("adapter_config.json is not JSON")?;
    let named = cfg
        .get("base_model_name_or_path")
        .and_then(|b| b.as_str())
        .map(str::to_string);
    let base = match (base, named) {
        (Some(b), _) => b.display().to_string(),
        (None, Some(n)) => n,
        (None, None) => bail!("adapter_config.json names no base_model_name_or_path"),
    };
    let base = base.as_str();
    let (mut model, _) = crate::train::load_model(std::path::Path::new(base), device)
        .with_context(|| {
            format!(
                "loading the base model {base} of the adapters in {}",
                dir.display()
            )
        })?;
    let lora = crate::model::LoraConfig {
        r: cfg
            .get("r")
            .and_then(|v| v.as_i64())
            .context("adapter_config.json: r")?,
        alpha: cfg
            .get("lora_alpha")
            .and_then(|v| v.as_f64())
            .context("adapter_config.json: lora_alpha")?,
        dropout: 0.0,
        target_modules: serde_json::from_value(
            cfg.get("target_modules").cloned().unwrap_or_default(),
        )
        .context("adapter_config.json: target_modules")?,
    };
    model.add_lora(&lora, 0)?;
    let tensors: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(dir.join("adapter_model.safetensors"))?
            .into_iter()
            .collect();
    model.load_lora(&tensors)?;
    let tok = Tok::load(dir, &model.config.eos_token_ids)
        .or_else(|_| Tok::load(std::path::Path::new(base), &model.config.eos_token_ids))?;
    Ok((model, tok))
}

/// A private copy of a model directory (its files, not its subdirectories) under the
/// process's temporary directory, removed on drop: what the evaluation hashes and then loads,
/// so that whoever can write the directory cannot swap the weights between the two.
struct PrivateCopy(std::path::PathBuf);

impl PrivateCopy {
    fn of(dir: &std::path::Path, tag: &str) -> anyhow::Result<Self> {
        let to =
            std::env::temp_dir().join(format!("modelcommons-eval-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&to);
        std::fs::create_dir_all(&to).with_context(|| format!("creating {}", to.display()))?;
        let copy = Self(to);
        for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let path = e?.path();
            // Follows links, as loading would; directories are not part of a model.
            if std::fs::metadata(&path).is_ok_and(|m| m.is_file())
                && let Some(name) = path.file_name()
            {
                std::fs::copy(&path, copy.0.join(name))
                    .with_context(|| format!("copying {}", path.display()))?;
            }
        }
        Ok(copy)
    }
}

impl Drop for PrivateCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `eval`: returns the JSON result. The model (and the baseline) are copied first, and
/// the copies hashed and loaded; LoRA adapters are judged on the baseline, when given — the
/// base the job names — never on a base their own config names.
pub fn run(args: &EvalArgs) -> anyhow::Result<serde_json::Value> {
    let device = crate::train::parse_device(&args.device)?;
    let model_copy = PrivateCopy::of(&args.model, "model")?;
    let base_copy = args
        .baseline
        .as_ref()
        .map(|b| PrivateCopy::of(b, "baseline"))
        .transpose()?;
    let base_dir = base_copy.as_ref().map(|c| c.0.as_path());
    let measure = |dir: &std::path::Path,
                   base: Option<&std::path::Path>|
     -> anyhow::Result<(usize, BTreeMap<String, f64>, String)> {
        let digest = crate::train::weights_digest(dir)?;
        let (model, tok) = load_on(dir, base, device)?;
        let examples = data::load_sft(&args.data, &tok, args.max_seq_len)?;
        let m = evaluate(&model, &tok, &examples, args.batch_size)?;
        Ok((m.examples, m.into_map(), digest))
    };
    let (n, metrics, digest) = measure(&model_copy.0, base_dir)?;
    let verdicts = judge(&metrics, &args.targets);
    let mut result = serde_json::json!({
        "examples": n,
        "metrics": metrics,
        "modelDigest": digest,
        "targets": verdicts,
        "targetsMet": verdicts.iter().all(|v| v.met),
    });
    if let Some(base) = base_dir {
        let (_, metrics, digest) = measure(base, None)?;
        result["baseline"] = serde_json::json!({"metrics": metrics, "modelDigest": digest});
    }
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string_pretty(&result)? + "\n")
            .with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_judge_by_direction() {
        let t: Vec<Target> = ["exactMatch>=0.8", "loss<=1.5", "accuracy>=0.5"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let metrics = BTreeMap::from([("exactMatch".to_string(), 0.9), ("loss".to_string(), 2.0)]);
        let v = judge(&metrics, &t);
        assert!(v[0].met);
        assert!(!v[1].met, "loss 2.0 misses loss<=1.5");
        assert!(
            !v[2].met && v[2].value.is_none(),
            "an unmeasured metric fails"
        );
        assert!("exactMatch=0.8".parse::<Target>().is_err());
        assert!("loss<=abc".parse::<Target>().is_err());
    }

    #[test]
    fn normalization_ignores_case_and_punctuation() {
        assert_eq!(normalize(" Yes, it IS. "), "yesitis");
    }
}
