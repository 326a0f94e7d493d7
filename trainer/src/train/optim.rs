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

impl AdamWConfig {
    /// β1 0.9, β2 0.999, ε 1e-8 (the PyTorch and `transformers` defaults).
    pub fn new(lr: f64, weight_decay: f64) -> Self {
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        }
    }
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

/// The optimizer. Gradients are computed by [`AdamW::backward`] into fresh tensors (as
/// `zero_grad(set_to_none=True)`: no memset per step), accumulated across micro-batches, and
/// released by [`AdamW::apply`].
#[derive(Debug)]
pub struct AdamW {
    cfg: AdamWConfig,
    slots: Vec<Slot>,
    grads: Vec<Option<Tensor>>,
    /// Updates applied so far.
    pub step: u64,
}

impl AdamW {
    /// Takes the named parameters (marking them as requiring gradients).
    pub fn new(params: Vec<(String, Tensor)>, cfg: AdamWConfig) -> Self {
        let slots: Vec<Slot> = params
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
        let grads = (0..slots.len()).map(|_| None).collect();
        Self {
            cfg,
            slots,
            grads,
            step: 0,
        }
    }

    /// Number of trainable scalars.
    pub fn numel(&self) -> i64 {
        self.slots.iter().map(|s| s.param.numel() as i64).sum()
    }

    /// Drops accumulated gradients.
    pub fn zero_grad(&mut self) {
        self.grads.iter_mut().for_each(|g| *g = None);
    }

    /// Back-propagates `loss` and adds its gradients to the accumulated ones.
    pub fn backward(&mut self, loss: &Tensor) -> anyhow::Result<()> {
        let params: Vec<&Tensor> = self.slots.iter().map(|s| &s.param).collect();
        let grads = Tensor::f_run_backward(&[loss], &params, false, false)?;
        tch::no_grad(|| {
            for (acc, g) in self.grads.iter_mut().zip(grads) {
                if !g.defined() {
                    continue;
                }
                match acc {
                    Some(a) => {
                        let _ = a.g_add_(&g);
                    }
                    None => *acc = Some(g),
                }
            }
        });
        Ok(())
    }

    /// Scales gradients so their global L2 norm is at most `max_norm`; returns the norm before.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        let total = tch::no_grad(|| {
            let mut sq = 0.0;
            for g in self.grads.iter().flatten() {
                {
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
                for g in self.grads.iter_mut().flatten() {
                    let _ = g.g_mul_scalar_(scale);
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
            for (s, g) in self.slots.iter_mut().zip(self.grads.iter_mut()) {
                let Some(g) = g.take() else {
                    continue;
                };
                let g = g.to_kind(Kind::Float);
                // In place, as torch.optim.AdamW: m ← lerp(m, g, 1−β1); v ← β2·v + (1−β2)·g²;
                // p ← p − (lr/bc1)·m / (√v/√bc2 + ε).
                let _ = s.m.lerp_(&g, 1.0 - c.beta1);
                let _ = s.v.g_mul_scalar_(c.beta2);
                let _ = s.v.addcmul_(&(&g * (1.0 - c.beta2)), &g);
                let mut denom = s.v.sqrt();
                let _ = denom.g_div_scalar_(bc2.sqrt());
                let _ = denom.g_add_scalar_(c.eps);
                let target = s.master.as_mut().unwrap_or(&mut s.param);
                if c.weight_decay > 0.0 {
                    let _ = target.g_mul_scalar_(1.0 - lr * c.weight_decay);
                }
                let _ = target.addcdiv_(&(&s.m * (-lr / bc1)), &denom);
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
            opt.backward(&loss).unwrap();
            let norm = opt.clip_grad_norm(1.0);
            assert!(norm >= 0.0);
            opt.apply(0.05);
        }
        let v: Vec<f32> = Vec::try_from(p.detach()).unwrap();
        assert!(v.iter().all(|x| x.abs() < 0.05), "{v:?}");
        assert_eq!(opt.state_tensors().len(), 2);
    }
}
