//! AdamW with decoupled weight decay, gradient-norm clipping, and warmup + cosine decay — in
//! the open so its whole state (moments, f32 master weights for bf16 parameters, step) can be
//! checkpointed and restored exactly.

use std::collections::HashMap;

use anyhow::Context;
use tch::{Kind, Tensor};

/// AdamW hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// The learning rate at `step` (1-based): linear warmup, then cosine decay to `min_ratio`·lr.
pub fn lr_at(step: u64, total: u64, warmup: u64, lr: f64, min_ratio: f64) -> f64 {
    if warmup > 0 && step <= warmup {
        return lr * step as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step.saturating_sub(warmup)) as f64 / span).clamp(0.0, 1.0);
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    lr * (min_ratio + (1.0 - min_ratio) * cosine)
}

/// One parameter's optimizer state.
#[derive(Debug)]
struct Slot {
    name: String,
    param: Tensor,
    master: Option<Tensor>,
    m: Tensor,
    v: Tensor,
}

/// The optimizer.
#[derive(Debug)]
pub struct AdamW {
    cfg: AdamWConfig,
    slots: Vec<Slot>,
    /// Updates applied so far.
    pub step: u64,
}

impl AdamW {
    /// Takes the named parameters (marking them as requiring gradients).
    pub fn new(params: Vec<(String, Tensor)>, cfg: AdamWConfig) -> Self {
        let slots = params
            .into_iter()
            .map(|(name, p)| {
                let p = p.set_requires_grad(true);
                let master = (p.kind() != Kind::Float).then(|| p.detach().to_kind(Kind::Float));
                Slot {
                    name,
                    m: Tensor::zeros_like(&p).to_kind(Kind::Float),
                    v: Tensor::zeros_like(&p).to_kind(Kind::Float),
                    master,
                    param: p,
                }
            })
            .collect();
        Self {
            cfg,
            slots,
            step: 0,
        }
    }

    /// Number of trainable scalars.
    pub fn numel(&self) -> i64 {
        self.slots.iter().map(|s| s.param.numel() as i64).sum()
    }

    /// Clears gradients.
    pub fn zero_grad(&mut self) {
        for s in &mut self.slots {
            let mut g = s.param.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    /// Scales gradients so their global L2 norm is at most `max_norm`; returns the norm before.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        let total = tch::no_grad(|| {
            let mut sq = 0.0;
            for s in &self.slots {
                let g = s.param.grad();
                if g.defined() {
                    sq += g
                        .to_kind(Kind::Float)
                        .pow_tensor_scalar(2)
                        .sum(Kind::Float)
                        .double_value(&[]);
                }
            }
            sq.sqrt()
        });
        if max_norm > 0.0 && total > max_norm {
            let scale = max_norm / (total + 1e-6);
            tch::no_grad(|| {
                for s in &self.slots {
                    let mut g = s.param.grad();
                    if g.defined() {
                        let _ = g.g_mul_scalar_(scale);
                    }
                }
            });
        }
        total
    }

    /// Applies one update with learning rate `lr`.
    pub fn apply(&mut self, lr: f64) {
        self.step += 1;
        let c = self.cfg;
        let t = self.step as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2 = 1.0 - c.beta2.powi(t);
        tch::no_grad(|| {
            for s in &mut self.slots {
                let g = s.param.grad();
                if !g.defined() {
                    continue;
                }
                let g = g.to_kind(Kind::Float);
                let _ = s.m.g_mul_scalar_(c.beta1).g_add_(&(&g * (1.0 - c.beta1)));
                let _ =
                    s.v.g_mul_scalar_(c.beta2)
                        .g_add_(&(g.pow_tensor_scalar(2) * (1.0 - c.beta2)));
                let update = (&s.m / bc1) / ((&s.v / bc2).sqrt() + c.eps);
                let target = s.master.as_mut().unwrap_or(&mut s.param);
                if c.weight_decay > 0.0 {
                    let _ = target.g_mul_scalar_(1.0 - lr * c.weight_decay);
                }
                let _ = target.g_sub_(&(update * lr).to_kind(target.kind()));
                if let Some(master) = &s.master {
                    s.param.copy_(master);
                }
            }
        });
    }

    /// The state to checkpoint: moments and master weights, by parameter name.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for s in &self.slots {
            out.push((format!("m.{}", s.name), s.m.shallow_clone()));
            out.push((format!("v.{}", s.name), s.v.shallow_clone()));
            if let Some(master) = &s.master {
                out.push((format!("master.{}", s.name), master.shallow_clone()));
            }
        }
        out
    }

    /// Restores what [`AdamW::state_tensors`] wrote, and the step count.
    pub fn load_state(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        step: u64,
    ) -> anyhow::Result<()> {
        tch::no_grad(|| -> anyhow::Result<()> {
            for s in &mut self.slots {
                for (prefix, dst) in [("m", &mut s.m), ("v", &mut s.v)] {
                    let src = tensors
                        .get(&format!("{prefix}.{}", s.name))
                        .with_context(|| {
                            format!("the optimizer state lacks {prefix}.{}", s.name)
                        })?;
                    dst.copy_(&src.to_device(dst.device()));
                }
                if let Some(master) = &mut s.master {
                    let src = tensors
                        .get(&format!("master.{}", s.name))
                        .with_context(|| format!("the optimizer state lacks master.{}", s.name))?;
                    master.copy_(&src.to_device(master.device()));
                }
            }
            Ok(())
        })?;
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        assert_eq!(lr_at(1, 100, 10, 1.0, 0.0), 0.1);
        assert_eq!(lr_at(10, 100, 10, 1.0, 0.0), 1.0);
        assert!((lr_at(55, 100, 10, 1.0, 0.0) - 0.5).abs() < 1e-9);
        assert!(lr_at(100, 100, 10, 1.0, 0.1) - 0.1 < 1e-9);
        assert_eq!(
            lr_at(5, 10, 0, 2.0, 0.0),
            2.0 * 0.5 * (1.0 + (std::f64::consts::PI * 0.5).cos())
        );
    }

    #[test]
    fn adamw_minimizes_a_quadratic_and_clips() {
        let p = Tensor::from_slice(&[3.0f32, -2.0]);
        let mut opt = AdamW::new(
            vec![("p".into(), p.shallow_clone())],
            AdamWConfig {
                lr: 0.1,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.0,
            },
        );
        for _ in 0..300 {
            opt.zero_grad();
            let loss = (&p * &p).sum(Kind::Float) * 100.0;
            loss.backward();
            let norm = opt.clip_grad_norm(1.0);
            assert!(norm >= 0.0);
            opt.apply(0.05);
        }
        let v: Vec<f32> = Vec::try_from(p.detach()).unwrap();
        assert!(v.iter().all(|x| x.abs() < 0.05), "{v:?}");
        assert_eq!(opt.state_tensors().len(), 2);
    }
}
