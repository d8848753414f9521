//! Optimizers whose state is plain tensors we own, and learning-rate schedules.

use serde::{Deserialize, Serialize};
use tch::Tensor;

/// The update rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum OptimizerKind {
    /// Adam (Kingma & Ba), with L2 weight decay added to the gradient.
    Adam {
        /// First-moment decay.
        #[serde(default = "beta1")]
        beta1: f64,
        /// Second-moment decay.
        #[serde(default = "beta2")]
        beta2: f64,
        /// Denominator guard.
        #[serde(default = "eps")]
        eps: f64,
    },
    /// Stochastic gradient descent with heavy-ball momentum.
    Sgd {
        /// Momentum factor.
        #[serde(default = "momentum")]
        momentum: f64,
    },
}

fn beta1() -> f64 {
    0.9
}
fn beta2() -> f64 {
    0.999
}
fn eps() -> f64 {
    1e-8
}
fn momentum() -> f64 {
    0.9
}

impl Default for OptimizerKind {
    fn default() -> Self {
        OptimizerKind::Adam {
            beta1: beta1(),
            beta2: beta2(),
            eps: eps(),
        }
    }
}

/// An optimizer over a fixed list of parameters.
pub struct Optimizer {
    kind: OptimizerKind,
    weight_decay: f64,
    params: Vec<Tensor>,
    first: Vec<Tensor>,
    second: Vec<Tensor>,
    steps: i32,
}

impl Optimizer {
    /// State for `params` (zeros).
    pub fn new(kind: OptimizerKind, weight_decay: f64, params: Vec<Tensor>) -> Self {
        let zeros = |ps: &[Tensor]| ps.iter().map(|p| p.zeros_like()).collect::<Vec<_>>();
        let first = zeros(&params);
        let second = match kind {
            OptimizerKind::Adam { .. } => zeros(&params),
            OptimizerKind::Sgd { .. } => Vec::new(),
        };
        Optimizer {
            kind,
            weight_decay,
            params,
            first,
            second,
            steps: 0,
        }
    }

    /// The parameters, in a fixed order (the same on every rank).
    pub fn params(&self) -> &[Tensor] {
        &self.params
    }

    /// The state to checkpoint: moment buffers by name (`first.I`,
    /// `second.I`, in parameter order) and the step count.
    pub fn state(&self) -> (Vec<(String, Tensor)>, i32) {
        let named = |prefix: &str, ts: &[Tensor]| {
            ts.iter()
                .enumerate()
                .map(|(i, t)| (format!("{prefix}.{i}"), t.shallow_clone()))
                .collect::<Vec<_>>()
        };
        let mut out = named("first", &self.first);
        out.extend(named("second", &self.second));
        (out, self.steps)
    }

    /// Restores what [`Optimizer::state`] returned; every buffer must be
    /// present with its shape.
    pub fn load_state(&mut self, tensors: &[(String, Tensor)], steps: i32) -> Result<(), String> {
        let map: std::collections::HashMap<&str, &Tensor> =
            tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        for (prefix, bufs) in [("first", &mut self.first), ("second", &mut self.second)] {
            for (i, b) in bufs.iter_mut().enumerate() {
                let name = format!("{prefix}.{i}");
                let src = map.get(name.as_str()).ok_or(format!("no `{name}`"))?;
                if src.size() != b.size() {
                    return Err(format!(
                        "`{name}` has shape {:?}, the model needs {:?}",
                        src.size(),
                        b.size()
                    ));
                }
                tch::no_grad(|| b.copy_(src));
            }
        }
        self.steps = steps;
        Ok(())
    }

    /// Clears every parameter's gradient.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.zero_grad();
        }
    }

    /// Applies one update with learning rate `lr` from the current gradients.
    pub fn step(&mut self, lr: f64) {
        self.steps += 1;
        let t = self.steps;
        tch::no_grad(|| {
            for (i, p) in self.params.iter_mut().enumerate() {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let g = if self.weight_decay > 0.0 {
                    &g + &*p * self.weight_decay
                } else {
                    g
                };
                let update = match self.kind {
                    OptimizerKind::Adam { beta1, beta2, eps } => {
                        let m = &self.first[i] * beta1 + &g * (1.0 - beta1);
                        let v = &self.second[i] * beta2 + &g * &g * (1.0 - beta2);
                        self.first[i].copy_(&m);
                        self.second[i].copy_(&v);
                        let mhat = m / (1.0 - beta1.powi(t));
                        let vhat = v / (1.0 - beta2.powi(t));
                        mhat / (vhat.sqrt() + eps) * lr
                    }
                    OptimizerKind::Sgd { momentum } => {
                        let b = &self.first[i] * momentum + &g;
                        self.first[i].copy_(&b);
                        b * lr
                    }
                };
                let new = &*p - update;
                p.copy_(&new);
            }
        });
    }
}

/// How the learning rate grows with the global batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LrScaling {
    /// Use `lr` as given.
    #[default]
    None,
    /// lr x global batch / 256 (Goyal et al.), reached by a linear warm-up.
    Linear,
}

/// How the learning rate changes after warm-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum LrSchedule {
    /// Stay at the (scaled) rate.
    #[default]
    Constant,
    /// Half a cosine from the rate down to zero at the last step.
    Cosine,
    /// Multiply by `factor` at each listed epoch (e.g. 30, 60, 80 with 0.1).
    Step {
        /// Epochs (0-based) at whose start the rate drops.
        epochs: Vec<usize>,
        /// The factor applied at each.
        factor: f64,
    },
}

/// The learning rate over a run: scaling with the global batch, linear
/// warm-up, then the schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct LrPlan {
    /// Base rate (for a global batch of 256 when scaling is linear).
    pub base: f64,
    /// Scaling with the global batch.
    pub scaling: LrScaling,
    /// Samples per step over all ranks.
    pub global_batch: usize,
    /// Steps of linear warm-up.
    pub warmup_steps: usize,
    /// Steps per epoch.
    pub steps_per_epoch: usize,
    /// Steps in the whole run.
    pub total_steps: usize,
    /// What happens after warm-up.
    pub schedule: LrSchedule,
}

impl LrPlan {
    /// The rate at global step `step` (0-based).
    pub fn at(&self, step: usize) -> f64 {
        let target = match self.scaling {
            LrScaling::None => self.base,
            LrScaling::Linear => self.base * self.global_batch as f64 / 256.0,
        };
        if step < self.warmup_steps {
            return target * (step + 1) as f64 / self.warmup_steps as f64;
        }
        match &self.schedule {
            LrSchedule::Constant => target,
            LrSchedule::Cosine => {
                let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
                let t = ((step - self.warmup_steps) as f64 / span).min(1.0);
                target * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
            LrSchedule::Step { epochs, factor } => {
                let epoch = step / self.steps_per_epoch.max(1);
                let drops = epochs.iter().filter(|&&e| epoch >= e).count();
                target * factor.powi(drops as i32)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgd_and_adam_minimise_a_quadratic() {
        for kind in [
            OptimizerKind::Sgd { momentum: 0.9 },
            OptimizerKind::default(),
        ] {
            let p = Tensor::from_slice(&[3.0f32, -2.0]).set_requires_grad(true);
            let mut opt = Optimizer::new(kind, 0.0, vec![p.shallow_clone()]);
            for _ in 0..300 {
                opt.zero_grad();
                (&p * &p).sum(tch::Kind::Float).backward();
                opt.step(0.05);
            }
            let v: Vec<f32> = Vec::try_from(&p.detach()).unwrap();
            assert!(v.iter().all(|x| x.abs() < 0.05), "{kind:?}: {v:?}");
        }
    }

    #[test]
    fn adam_first_step_moves_by_lr() {
        // With bias correction the first Adam step is lr * sign(g).
        let p = Tensor::from_slice(&[1.0f32, 1.0]).set_requires_grad(true);
        let mut opt = Optimizer::new(OptimizerKind::default(), 0.0, vec![p.shallow_clone()]);
        (&p * Tensor::from_slice(&[3.0f32, -0.5]))
            .sum(tch::Kind::Float)
            .backward();
        opt.step(0.1);
        let v: Vec<f32> = Vec::try_from(&p.detach()).unwrap();
        assert!(
            (v[0] - 0.9).abs() < 1e-5 && (v[1] - 1.1).abs() < 1e-5,
            "{v:?}"
        );
    }

    #[test]
    fn scaling_warmup_and_schedules() {
        let plan = |scaling, warmup_steps, schedule| LrPlan {
            base: 0.1,
            scaling,
            global_batch: 512,
            warmup_steps,
            steps_per_epoch: 10,
            total_steps: 100,
            schedule,
        };
        let p = plan(LrScaling::Linear, 0, LrSchedule::Constant);
        assert_eq!(p.at(0), 0.2);
        let p = plan(LrScaling::Linear, 4, LrSchedule::Constant);
        assert!((p.at(0) - 0.05).abs() < 1e-12);
        assert_eq!(p.at(3), 0.2);
        assert_eq!(plan(LrScaling::None, 0, LrSchedule::Constant).at(9), 0.1);
        let c = plan(LrScaling::None, 0, LrSchedule::Cosine);
        assert_eq!(c.at(0), 0.1);
        assert!((c.at(50) - 0.05).abs() < 1e-12);
        assert!(c.at(100).abs() < 1e-12);
        let s = plan(
            LrScaling::None,
            0,
            LrSchedule::Step {
                epochs: vec![3, 6],
                factor: 0.1,
            },
        );
        assert_eq!(s.at(29), 0.1);
        assert!((s.at(30) - 0.01).abs() < 1e-12);
        assert!((s.at(65) - 0.001).abs() < 1e-12);
    }
}
