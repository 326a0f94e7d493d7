//! `modelcommons-trainer`: the binary FineTuneJob and ModelDeployment pods run.
//!
//! ```text
//! modelcommons-trainer selftest [--steps N] [--cpu]   train a tiny network, print the loss curve
//! ```

use anyhow::{Context, bail};
use modelcommons_trainer::{device, selftest};

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
        _ => bail!("usage: modelcommons-trainer selftest [--steps N] [--cpu]"),
    }
}
