//! A tiny network trained end to end: learns `y = sin(3x) + 0.5x` on [-1, 1] with a two-layer
//! MLP and AdamW. Used by `modelcommons-trainer selftest` and the test suite to prove that
//! libtorch loads, autograd works and optimization reduces the loss on the current device.

use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

/// The outcome of a self-test run.
#[derive(Debug, Clone)]
pub struct Report {
    pub device: Device,
    /// Mean squared error on the training set before the first step.
    pub initial_loss: f64,
    /// Mean squared error after the last step.
    pub final_loss: f64,
    /// The loss every `steps / 10` steps, for progress output.
    pub curve: Vec<(usize, f64)>,
}

/// Errors of the self-test.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("steps must be at least 1")]
    NoSteps,
}

/// Trains for `steps` full-batch steps with a fixed `seed` on `device`.
pub fn run(device: Device, steps: usize, seed: i64) -> Result<Report, Error> {
    if steps == 0 {
        return Err(Error::NoSteps);
    }
    let x = Tensor::linspace(-1.0, 1.0, 256, (Kind::Float, device)).unsqueeze(1);
    let y = (&x * 3.0).sin() + &x * 0.5;
    // The initial weights are drawn under the seed lock: the same seed, the same network.
    let vs = nn::VarStore::new(device);
    let net = crate::seeded(seed, || {
        let root = vs.root();
        nn::seq()
            .add(nn::linear(&root / "l1", 1, 64, Default::default()))
            .add_fn(|t| t.tanh())
            .add(nn::linear(&root / "l2", 64, 1, Default::default()))
    });
    let mut opt = nn::AdamW::default().build(&vs, 1e-2)?;

    let loss_of = |net: &nn::Sequential| -> Result<f64, tch::TchError> {
        let l = tch::no_grad(|| net.forward(&x).mse_loss(&y, tch::Reduction::Mean));
        l.f_double_value(&[])
    };
    let initial_loss = loss_of(&net)?;
    let every = (steps / 10).max(1);
    let mut curve = Vec::new();
    for step in 1..=steps {
        let loss = net.forward(&x).mse_loss(&y, tch::Reduction::Mean);
        opt.backward_step(&loss);
        if step % every == 0 || step == steps {
            curve.push((step, loss.f_double_value(&[])?));
        }
    }
    let final_loss = loss_of(&net)?;
    Ok(Report {
        device,
        initial_loss,
        final_loss,
        curve,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_falls_on_cpu() {
        let r = run(Device::Cpu, 300, 7).unwrap();
        assert!(
            r.initial_loss > 0.05,
            "the untrained net should be far off: {}",
            r.initial_loss
        );
        assert!(
            r.final_loss < r.initial_loss / 20.0,
            "loss should fall at least 20x: {} -> {}",
            r.initial_loss,
            r.final_loss
        );
        assert!(
            r.curve.windows(2).filter(|w| w[1].1 < w[0].1).count() >= 5,
            "curve: {:?}",
            r.curve
        );
    }

    #[test]
    fn same_seed_same_result() {
        let a = run(Device::Cpu, 20, 3).unwrap();
        let b = run(Device::Cpu, 20, 3).unwrap();
        assert_eq!(a.final_loss, b.final_loss);
        assert!(matches!(run(Device::Cpu, 0, 3), Err(Error::NoSteps)));
    }
}
