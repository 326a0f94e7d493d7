//! `dpo`: Direct Preference Optimization (Rafailov et al., 2023) on `{prompt, chosen,
//! rejected}` JSONL against a frozen reference — the base model itself (adapters off) with
//! LoRA, a second frozen copy with full fine-tuning.
//!
//! loss = −log σ(β·[(log π(c) − log π_ref(c)) − (log π(r) − log π_ref(r))]); the implicit
//! reward of a response is β·(log π − log π_ref). Reported: preference accuracy (share of pairs
//! whose chosen reward beats the rejected one) and the mean reward margin, before and after,
//! on held-out pairs when given.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::model::{Llama, Mode};
use crate::train::data::{self, IGNORE, Pair};
use crate::train::optim::{AdamW, AdamWConfig, lr_at};
use crate::train::{Method, StepReport, TrainArgs};

/// Flags of `dpo`: those of `train` (with `--data` holding preference pairs) plus β.
#[derive(Debug, Clone, clap::Args)]
pub struct DpoArgs {
    #[command(flatten)]
    pub train: TrainArgs,
    /// How far the policy may move from the reference (higher: closer).
    #[arg(long, default_value_t = 0.1)]
    pub beta: f64,
}

/// Preference metrics of a set of pairs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreferenceMetrics {
    /// Share of pairs with chosen reward > rejected reward.
    pub preference_accuracy: f64,
    /// Mean (chosen reward − rejected reward).
    pub reward_margin: f64,
    /// Mean DPO loss.
    pub loss: f64,
}

/// What `dpo` wrote, also in `OUT/result.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DpoResult {
    pub digest: String,
    pub weights_file: String,
    pub steps: u64,
    pub beta: f64,
    /// On the held-out pairs (or the training pairs without --eval-data), before training.
    pub before: PreferenceMetrics,
    /// The same, after.
    pub after: PreferenceMetrics,
    pub tokens_per_second: f64,
    /// `preferenceAccuracy` and `rewardMargin` after training, by rubric names.
    pub metrics: BTreeMap<String, f64>,
}

fn rows(pairs: &[&Pair]) -> Vec<(Vec<i64>, Vec<i64>)> {
    let mut out = Vec::with_capacity(pairs.len() * 2);
    for responses in [
        pairs
            .iter()
            .map(|p| (&p.prompt, &p.chosen))
            .collect::<Vec<_>>(),
        pairs.iter().map(|p| (&p.prompt, &p.rejected)).collect(),
    ] {
        for (prompt, resp) in responses {
            let mut ids = prompt.clone();
            ids.extend(resp);
            let labels: Vec<i64> = std::iter::repeat_n(IGNORE, prompt.len())
                .chain(resp.iter().copied())
                .collect();
            out.push((ids, labels));
        }
    }
    out
}

/// Implicit rewards β·(log π − log π_ref) of (chosen, rejected), each [n]; the policy part
/// keeps its graph when `grad`.
fn rewards(
    policy: &Llama,
    reference: Option<&Llama>,
    pairs: &[&Pair],
    pad: i64,
    beta: f64,
    grad: bool,
) -> (Tensor, Tensor, i64) {
    let r = rows(pairs);
    let refs: Vec<(&[i64], &[i64])> = r
        .iter()
        .map(|(i, l)| (i.as_slice(), l.as_slice()))
        .collect();
    let batch = data::collate(&refs, pad, policy.device());
    let n = pairs.len() as i64;
    let pol =
        |mode| data::sequence_logprobs(&policy.forward(&batch.ids, None, mode), &batch.labels);
    let policy_lp = if grad {
        pol(Mode::TRAIN)
    } else {
        tch::no_grad(|| pol(Mode::EVAL))
    };
    let ref_lp = tch::no_grad(|| match reference {
        Some(m) => data::sequence_logprobs(&m.forward(&batch.ids, None, Mode::EVAL), &batch.labels),
        None => {
            data::sequence_logprobs(&policy.forward(&batch.ids, None, Mode::BASE), &batch.labels)
        }
    });
    let reward = (policy_lp - ref_lp) * beta;
    (reward.narrow(0, 0, n), reward.narrow(0, n, n), batch.tokens)
}

fn dpo_loss(chosen: &Tensor, rejected: &Tensor) -> Tensor {
    (chosen - rejected).log_sigmoid().mean(Kind::Float).neg()
}

/// Preference metrics of `pairs` under the current policy.
pub fn measure(
    policy: &Llama,
    reference: Option<&Llama>,
    pairs: &[Pair],
    pad: i64,
    beta: f64,
    batch: usize,
) -> PreferenceMetrics {
    let (mut wins, mut margin, mut loss) = (0.0, 0.0, 0.0);
    for chunk in pairs.chunks(batch.max(1)) {
        let refs: Vec<&Pair> = chunk.iter().collect();
        let (c, r, _) = rewards(policy, reference, &refs, pad, beta, false);
        let diff = &c - &r;
        wins += diff
            .gt(0.0)
            .to_kind(Kind::Float)
            .sum(Kind::Float)
            .double_value(&[]);
        margin += diff.sum(Kind::Float).double_value(&[]);
        loss += dpo_loss(&c, &r).double_value(&[]) * chunk.len() as f64;
    }
    let n = pairs.len().max(1) as f64;
    PreferenceMetrics {
        preference_accuracy: wins / n,
        reward_margin: margin / n,
        loss: loss / n,
    }
}

/// Runs `dpo`.
pub fn run(args: &DpoArgs, on_step: &mut dyn FnMut(&StepReport)) -> anyhow::Result<DpoResult> {
    let t = &args.train;
    if args.beta.is_nan() || args.beta <= 0.0 {
        bail!("--beta must be positive, got {}", args.beta);
    }
    if t.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let device = crate::train::parse_device(&t.device)?;
    let (mut policy, tok) = crate::train::load_model(&t.model, device)?;
    let train_pairs = data::load_pairs(&t.data, &tok, t.max_seq_len)?;
    let held_out = match &t.eval_data {
        Some(p) => data::load_pairs(p, &tok, t.max_seq_len)?,
        None => train_pairs.clone(),
    };
    let reference = match t.method {
        Method::Lora => {
            policy.add_lora(&t.lora_config(), t.seed as i64)?;
            None
        }
        Method::Full => Some(crate::train::load_model(&t.model, device)?.0),
    };
    let pad = tok.pad_id();
    let before = measure(
        &policy,
        reference.as_ref(),
        &held_out,
        pad,
        args.beta,
        t.batch_size,
    );
    let total_steps = match t.max_steps {
        Some(s) => s,
        None => train_pairs.len().div_ceil(t.batch_size) as u64 * t.epochs,
    };
    let mut opt = AdamW::new(
        policy.trainable_tensors(),
        AdamWConfig::new(t.lr, t.weight_decay),
    );
    let started = Instant::now();
    let mut tokens = 0i64;
    let per_epoch = train_pairs.len().div_ceil(t.batch_size).max(1) as u64;
    for step in 0..total_steps {
        let order = crate::train::epoch_order(train_pairs.len(), t.seed, step / per_epoch);
        let within = (step % per_epoch) as usize;
        let batch: Vec<&Pair> = order
            .iter()
            .skip(within * t.batch_size)
            .take(t.batch_size)
            .map(|&i| &train_pairs[i])
            .collect();
        opt.zero_grad();
        tch::manual_seed(t.seed.wrapping_mul(1_000_003).wrapping_add(step) as i64);
        let (c, r, n) = rewards(&policy, reference.as_ref(), &batch, pad, args.beta, true);
        let loss = dpo_loss(&c, &r);
        opt.backward(&loss)?;
        tokens += n;
        opt.clip_grad_norm(t.max_grad_norm);
        let lr = lr_at(step + 1, total_steps, t.warmup_steps, t.lr, t.min_lr_ratio);
        opt.apply(lr);
        let l = loss.double_value(&[]);
        if !l.is_finite() {
            bail!("the DPO loss became {l} at step {} — lower --lr", step + 1);
        }
        on_step(&StepReport {
            step: step + 1,
            total_steps,
            loss: l,
            tokens_per_second: tokens as f64 / started.elapsed().as_secs_f64().max(1e-9),
            lr,
        });
    }
    let after = measure(
        &policy,
        reference.as_ref(),
        &held_out,
        pad,
        args.beta,
        t.batch_size,
    );
    std::fs::create_dir_all(&t.out).with_context(|| format!("creating {}", t.out.display()))?;
    let (digest, weights_file) = crate::train::write_output(t, &policy)?;
    let result = DpoResult {
        digest,
        weights_file,
        steps: total_steps,
        beta: args.beta,
        before,
        after,
        tokens_per_second: tokens as f64 / started.elapsed().as_secs_f64().max(1e-9),
        metrics: BTreeMap::from([
            ("preferenceAccuracy".to_string(), after.preference_accuracy),
            ("rewardMargin".to_string(), after.reward_margin),
        ]),
    };
    std::fs::write(
        t.out.join("result.json"),
        serde_json::to_string_pretty(&result)? + "\n",
    )
    .context("writing result.json")?;
    Ok(result)
}
