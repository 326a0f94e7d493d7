//! `modelcommons-trainer`: the binary FineTuneJob, RLHFRound and ModelDeployment pods run.

use std::io::Write;

use anyhow::{Context, bail};
use clap::Parser;
use modelcommons_trainer::cli::{Cli, Command, GenerateArgs};
use modelcommons_trainer::model::generate::{Generation, SamplingParams};
use modelcommons_trainer::model::init;
use modelcommons_trainer::model::tokenizer::ChatMessage;
use modelcommons_trainer::train::report::{ProgressUpdate, Reporter, ResultUpdate};
use modelcommons_trainer::train::{self, dpo, eval};
use modelcommons_trainer::{bench, device, selftest};

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// What a training run hands to the reporter: digest, weights URI, metrics.
type Outcome = (String, String, std::collections::BTreeMap<String, f64>);

/// Runs a training command with its progress and result going to the reporter (the
/// FineTuneJob's status in a pod, the terminal otherwise).
fn reported(
    run: impl FnOnce(&mut dyn FnMut(&train::StepReport)) -> anyhow::Result<Outcome>,
) -> anyhow::Result<()> {
    let rt = runtime()?;
    let mut reporter = rt.block_on(Reporter::from_env())?;
    let mut on_step = |s: &train::StepReport| {
        rt.block_on(reporter.progress(ProgressUpdate {
            step: s.step,
            total_steps: s.total_steps,
            loss: s.loss,
            tokens_per_second: s.tokens_per_second,
        }));
    };
    let (model_digest, model_uri, metrics) = run(&mut on_step)?;
    rt.block_on(reporter.result(ResultUpdate {
        model_digest,
        model_uri,
        metrics,
    }))?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Selftest { steps, cpu } => {
            let dev = if cpu {
                tch::Device::Cpu
            } else {
                device::best()
            };
            println!("device: {}", device::describe(dev));
            let r = selftest::run(dev, steps, 7)?;
            println!("step {:>5}  loss {:.6}", 0, r.initial_loss);
            for (step, loss) in &r.curve {
                println!("step {step:>5}  loss {loss:.6}");
            }
            println!(
                "loss {:.6} -> {:.6} ({:.1}x lower)",
                r.initial_loss,
                r.final_loss,
                r.initial_loss / r.final_loss
            );
            if r.final_loss >= r.initial_loss {
                bail!("the loss did not fall");
            }
            Ok(())
        }
        Command::Init {
            out,
            seed,
            vocab_size,
            hidden_size,
            intermediate_size,
            layers,
            heads,
            kv_heads,
        } => {
            let shape = init::TinyLlama {
                vocab_size,
                hidden_size,
                intermediate_size,
                num_hidden_layers: layers,
                num_attention_heads: heads,
                num_key_value_heads: kv_heads,
                ..init::TinyLlama::default()
            };
            let digest = shape.write(&out, seed)?;
            println!(
                "wrote a tiny Llama to {}: model.safetensors sha256 {digest}",
                out.display()
            );
            Ok(())
        }
        Command::Train(args) => reported(|on_step| {
            let r = train::run(&args, on_step)?;
            let uri = args.out.join(&r.weights_file).display().to_string();
            Ok((r.digest, uri, r.metrics))
        }),
        Command::Dpo(args) => reported(|on_step| {
            let r = dpo::run(&args, on_step)?;
            eprintln!(
                "held-out preference accuracy {:.3} -> {:.3}, reward margin {:.4} -> {:.4}",
                r.before.preference_accuracy,
                r.after.preference_accuracy,
                r.before.reward_margin,
                r.after.reward_margin
            );
            let uri = args.train.out.join(&r.weights_file).display().to_string();
            Ok((r.digest, uri, r.metrics))
        }),
        Command::Eval(args) => {
            let result = eval::run(&args)?;
            println!("{}", serde_json::to_string(&result)?);
            if result["targetsMet"] == serde_json::Value::Bool(false) {
                eprintln!("targets missed");
                std::process::exit(3);
            }
            Ok(())
        }
        Command::Generate(args) => generate(args),
        Command::Serve(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?
            .block_on(modelcommons_trainer::serve::run(args)),
        Command::Bench(args) => {
            println!("{}", bench::run(&args)?);
            Ok(())
        }
    }
}

fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    let device = train::parse_device(&args.device)?;
    let (model, tok) = eval::load_any(&args.model, device)?;
    let params = |seed: u64| SamplingParams {
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        top_p: args.top_p,
        seed: Some(seed),
        stop: args.stop.clone(),
    };
    if let Some(prompt) = &args.prompt {
        let mut g = Generation::new(&model, tok.encode(prompt, true)?, params(args.seed))?;
        let mut stdout = std::io::stdout().lock();
        while let Some(delta) = g.step(&model, &tok)? {
            write!(stdout, "{delta}")?;
            stdout.flush()?;
        }
        writeln!(stdout)?;
        return Ok(());
    }
    let (Some(input), Some(out)) = (&args.prompts, &args.out) else {
        bail!("give --prompt TEXT, or --prompts FILE.jsonl with --out FILE.jsonl");
    };
    let text =
        std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    let mut lines = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not JSON", input.display(), n + 1))?;
        let ids = if let Some(p) = v.get("prompt").and_then(|p| p.as_str()) {
            tok.encode(p, true)?
        } else if let Some(m) = v.get("messages") {
            let messages: Vec<ChatMessage> = serde_json::from_value(m.clone())
                .with_context(|| format!("{}:{}: bad messages", input.display(), n + 1))?;
            tok.encode_chat(&messages, true)?
        } else {
            bail!(
                "{}:{}: expected `prompt` or `messages`",
                input.display(),
                n + 1
            );
        };
        let mut responses = Vec::new();
        for k in 0..args.n {
            let seed = args.seed ^ ((n as u64) << 20) ^ k as u64;
            let c = Generation::new(&model, ids.clone(), params(seed))?.run(&model, &tok)?;
            responses.push(serde_json::json!({
                "text": c.text,
                "finishReason": c.finish_reason.as_str(),
                "completionTokens": c.token_ids.len(),
                "seed": seed,
            }));
        }
        let mut obj = v.clone();
        obj["responses"] = serde_json::Value::Array(responses);
        lines.push(serde_json::to_string(&obj)?);
    }
    std::fs::write(out, lines.join("\n") + "\n")
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "wrote {} prompts × {} responses to {}",
        lines.len(),
        args.n,
        out.display()
    );
    Ok(())
}
