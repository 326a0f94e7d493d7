//! `modelcommons-trainer`: the binary FineTuneJob and ModelDeployment pods run.
//!
//! ```text
//! modelcommons-trainer selftest [--steps N] [--cpu]   train a tiny network, print the loss curve
//! modelcommons-trainer init --out DIR [--seed N]      write a tiny random Llama (HF layout)
//! ```

use anyhow::{Context, bail};
use modelcommons_trainer::{device, init, selftest};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("selftest") => {
            let steps = match args.iter().position(|a| a == "--steps") {
                Some(i) => args
                    .get(i + 1)
                    .context("--steps takes a number")?
                    .parse()
                    .context("--steps takes a number")?,
                None => 300,
            };
            let dev = if args.iter().any(|a| a == "--cpu") {
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
        Some("init") => {
            let out = args
                .iter()
                .position(|a| a == "--out")
                .and_then(|i| args.get(i + 1))
                .context("--out DIR is required")?;
            let seed = match args.iter().position(|a| a == "--seed") {
                Some(i) => args
                    .get(i + 1)
                    .context("--seed takes a number")?
                    .parse()
                    .context("--seed takes a number")?,
                None => 7,
            };
            let digest = init::TinyLlama::default().write(std::path::Path::new(out), seed)?;
            println!("wrote a tiny Llama to {out}: model.safetensors sha256 {digest}");
            Ok(())
        }
        // TEMPORARY (branch `serve`): main will wire `serve` with its own argument parsing.
        Some("serve") => {
            use clap::Parser;
            #[derive(Parser)]
            #[command(name = "modelcommons-trainer serve")]
            struct Serve {
                #[command(flatten)]
                args: modelcommons_trainer::serve::Args,
            }
            let cli = Serve::parse_from(
                std::iter::once("serve".to_string()).chain(args.into_iter().skip(1)),
            );
            tokio::runtime::Runtime::new()?.block_on(modelcommons_trainer::serve::run(cli.args))
        }
        _ => bail!(
            "usage: modelcommons-trainer selftest [--steps N] [--cpu] | init --out DIR [--seed N]"
        ),
    }
}
