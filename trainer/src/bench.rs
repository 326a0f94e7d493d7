//! `bench`: training and decode throughput and peak memory of this process, for the side-by-side
//! comparison with PyTorch eager / `transformers` in `hack/bench-trainer.sh` (same model
//! directory, batch, lengths and thread count; each case in its own process so peak RSS is
//! per case).

use std::time::Instant;

use anyhow::bail;
use tch::{Device, Kind, Tensor};

use crate::model::generate::{SamplingParams, generate_batch};
use crate::model::{Llama, Mode};
use crate::train::optim::{AdamW, AdamWConfig};

/// Flags of `bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// `train` or `decode`.
    pub case: String,
    /// The model directory.
    #[arg(long)]
    pub model: std::path::PathBuf,
    /// Sequences per batch.
    #[arg(long, default_value_t = 8)]
    pub batch: i64,
    /// Training sequence length, or the decode prompt length.
    #[arg(long, default_value_t = 128)]
    pub seq: i64,
    /// Measured training steps, or new tokens per sequence when decoding.
    #[arg(long, default_value_t = 10)]
    pub steps: i64,
    /// Unmeasured warmup steps (training).
    #[arg(long, default_value_t = 2)]
    pub warmup: i64,
    /// Intra-op threads.
    #[arg(long, default_value_t = 1)]
    pub threads: i32,
}

/// Peak resident set size of this process, in MiB (VmHWM).
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn random_ids(vocab: i64, shape: [i64; 2], seed: u64) -> Tensor {
    let mut rng = crate::model::generate::Rng::new(seed);
    let n = (shape[0] * shape[1]) as usize;
    let ids: Vec<i64> = (0..n)
        .map(|_| (rng.next_u64() % vocab as u64) as i64)
        .collect();
    Tensor::from_slice(&ids).view(shape)
}

/// Runs one case; returns its JSON figures.
pub fn run(args: &BenchArgs) -> anyhow::Result<serde_json::Value> {
    tch::set_num_threads(args.threads);
    let model = Llama::load(&args.model, Device::Cpu, Kind::Float)?;
    let vocab = model.config.vocab_size;
    match args.case.as_str() {
        "train" => {
            let mut opt = AdamW::new(model.base_tensors(), AdamWConfig::new(1e-4, 0.0));
            let ids = random_ids(vocab, [args.batch, args.seq], 1);
            let mut step = || -> anyhow::Result<f64> {
                opt.zero_grad();
                let logits = model.forward(&ids, None, Mode::TRAIN);
                let loss = crate::train::data::lm_loss(&logits, &ids);
                opt.backward(&loss)?;
                opt.apply(1e-4);
                Ok(loss.double_value(&[]))
            };
            for _ in 0..args.warmup {
                step()?;
            }
            let t = Instant::now();
            let mut last = 0.0;
            for _ in 0..args.steps {
                last = step()?;
            }
            let secs = t.elapsed().as_secs_f64();
            Ok(serde_json::json!({
                "case": "train", "impl": "modelcommons (tch)",
                "tokens_per_second": (args.batch * args.seq * args.steps) as f64 / secs,
                "peak_rss_mib": peak_rss_mib(), "final_loss": last,
            }))
        }
        "decode" => {
            let ids = random_ids(vocab, [args.batch, args.seq], 2);
            let prompts: Vec<Vec<i64>> = (0..args.batch)
                .map(|r| Vec::<i64>::try_from(ids.get(r)).unwrap_or_default())
                .collect();
            let params = SamplingParams {
                max_tokens: args.steps as usize,
                temperature: 0.0,
                top_p: 1.0,
                seed: Some(0),
                stop: vec![],
            };
            // One short warmup run.
            generate_batch(
                &model,
                &prompts,
                &SamplingParams {
                    max_tokens: 2,
                    ..params.clone()
                },
                &[],
            )?;
            let t = Instant::now();
            let out = generate_batch(&model, &prompts, &params, &[])?;
            let secs = t.elapsed().as_secs_f64();
            let produced: usize = out.iter().map(Vec::len).sum();
            Ok(serde_json::json!({
                "case": format!("decode b{}", args.batch), "impl": "modelcommons (tch)",
                "tokens_per_second": produced as f64 / secs,
                "peak_rss_mib": peak_rss_mib(),
            }))
        }
        other => bail!("bench case is `train` or `decode`, got `{other}`"),
    }
}
