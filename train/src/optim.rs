//! Optimizers whose state is plain tensors we own, and learning-rate schedules.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::shim::foreach;

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
    /// LARS (You, Gitman & Ginsburg 2017): SGD with momentum whose step for
    /// each weight tensor is scaled by `trust` x |w| / |g + wd w|, so every
    /// layer moves by a similar fraction of its norm at large batches.
    /// Biases and normalisation parameters (1-D tensors) use the plain rate.
    Lars {
        /// Momentum factor.
        #[serde(default = "momentum")]
        momentum: f64,
        /// The trust coefficient (eta).
        #[serde(default = "trust")]
        trust: f64,
    },
    /// LAMB (You et al. 2019): Adam's direction plus decoupled weight decay,
    /// scaled per weight tensor by |w| / |direction| (1-D tensors: 1).
    Lamb {
        /// First-moment decay.
        #[serde(default = "beta1")]
        beta1: f64,
        /// Second-moment decay.
        #[serde(default = "beta2")]
        beta2: f64,
        /// Denominator guard.
        #[serde(default = "lamb_eps")]
        eps: f64,
    },
}

fn trust() -> f64 {
    0.001
}
fn lamb_eps() -> f64 {
    1e-6
}

/// |w| / |u| for a weight tensor (1 for 1-D tensors, or when either norm
/// is 0), as a 0-dim f64 tensor on the weight's device: computed there, so
/// a step never waits for the device to hand back two norms per tensor.
/// Every operation is the one the host would do, so on the CPU the update
/// is the same bits as [`trust_ratio_host`]'s.
fn trust_ratio(w: &Tensor, u: &Tensor) -> Tensor {
    // Made on the device (a fill, queued like any kernel): a host scalar
    // copied there would make the host wait for the device, per tensor.
    let one = || Tensor::ones([], (Kind::Double, w.device()));
    if w.dim() <= 1 {
        return one();
    }
    let wn = w.norm().to_kind(Kind::Double);
    let un = u.norm().to_kind(Kind::Double);
    let both = wn.gt(0.0).logical_and(&un.gt(0.0));
    (&wn / &un).where_self(&both, &one())
}

/// [`trust_ratio`] on the host, reading both norms back (the reference).
#[cfg(test)]
fn trust_ratio_host(w: &Tensor, u: &Tensor) -> f64 {
    if w.dim() <= 1 {
        return 1.0;
    }
    let (wn, un) = (w.norm().double_value(&[]), u.norm().double_value(&[]));
    if wn > 0.0 && un > 0.0 {
        wn / un
    } else {
        1.0
    }
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
            OptimizerKind::Adam { .. } | OptimizerKind::Lamb { .. } => zeros(&params),
            OptimizerKind::Sgd { .. } | OptimizerKind::Lars { .. } => Vec::new(),
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
        match self.kind {
            OptimizerKind::Adam { .. } | OptimizerKind::Sgd { .. } => self.step_lists(lr),
            OptimizerKind::Lars { .. } | OptimizerKind::Lamb { .. } => self.step_each(lr),
        }
    }

    /// Adam's and SGD's update over the whole list of parameters at once
    /// (libtorch's `_foreach_*` operations, as PyTorch's optimizers do it):
    /// on a GPU a dozen kernels a step instead of a dozen per tensor. Each
    /// operation is [`Optimizer::step_each`]'s, in its order, so on the CPU
    /// the bits are the same (a test holds them equal).
    fn step_lists(&mut self, lr: f64) {
        let t = self.steps;
        // Parameters with a gradient (a frozen or unused one is left alone).
        let mut live = Vec::with_capacity(self.params.len());
        let mut grads = Vec::with_capacity(self.params.len());
        for (i, p) in self.params.iter().enumerate() {
            let g = p.grad();
            if g.defined() {
                live.push(i);
                grads.push(g);
            }
        }
        if live.is_empty() {
            return;
        }
        let pick = |ts: &[Tensor]| {
            live.iter()
                .map(|&i| ts[i].shallow_clone())
                .collect::<Vec<_>>()
        };
        let params = pick(&self.params);
        tch::no_grad(|| {
            // L2 decay joins the gradient.
            if self.weight_decay > 0.0 {
                grads = foreach::add(&grads, &foreach::mul_scalar(&params, self.weight_decay));
            }
            let update = match self.kind {
                OptimizerKind::Adam { beta1, beta2, eps } => {
                    let (m, v) = (pick(&self.first), pick(&self.second));
                    foreach::mul_scalar_(&m, beta1);
                    foreach::add_(&m, &foreach::mul_scalar(&grads, 1.0 - beta1));
                    foreach::mul_scalar_(&v, beta2);
                    let g2 = foreach::mul(&grads, &grads);
                    foreach::add_(&v, &foreach::mul_scalar(&g2, 1.0 - beta2));
                    let denom = foreach::div_scalar(&v, 1.0 - beta2.powi(t));
                    crate::kernels::sqrt_all_(&denom);
                    foreach::add_scalar_(&denom, eps);
                    let u = foreach::div_scalar(&m, 1.0 - beta1.powi(t));
                    foreach::div_(&u, &denom);
                    foreach::mul_scalar_(&u, lr);
                    u
                }
                OptimizerKind::Sgd { momentum } => {
                    let b = pick(&self.first);
                    foreach::mul_scalar_(&b, momentum);
                    foreach::add_(&b, &grads);
                    foreach::mul_scalar(&b, lr)
                }
                OptimizerKind::Lars { .. } | OptimizerKind::Lamb { .. } => {
                    unreachable!("LARS and LAMB scale each tensor on its own")
                }
            };
            foreach::sub_(&params, &update);
        });
    }

    /// The update tensor by tensor: LARS and LAMB, whose step for each
    /// tensor depends on its own norms; for Adam and SGD, the reference
    /// [`Optimizer::step_lists`] is held to.
    fn step_each(&mut self, lr: f64) {
        let t = self.steps;
        tch::no_grad(|| {
            for (i, p) in self.params.iter_mut().enumerate() {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                // L2 decay joins the gradient, except in LAMB, where it is decoupled.
                let decoupled = matches!(self.kind, OptimizerKind::Lamb { .. });
                let g = if self.weight_decay > 0.0 && !decoupled {
                    &g + &*p * self.weight_decay
                } else {
                    g
                };
                // In place where the arithmetic stays the same: each avoided
                // temporary is an allocation and a dispatch, per tensor, per step.
                let update = match self.kind {
                    OptimizerKind::Adam { beta1, beta2, eps } => {
                        let m = &mut self.first[i];
                        let _ = m.g_mul_scalar_(beta1);
                        *m += &g * (1.0 - beta1);
                        let v = &mut self.second[i];
                        let _ = v.g_mul_scalar_(beta2);
                        *v += &g * &g * (1.0 - beta2);
                        let mut denom = &*v / (1.0 - beta2.powi(t));
                        crate::kernels::sqrt_(&mut denom);
                        denom += eps;
                        let mut u = &*m / (1.0 - beta1.powi(t));
                        u /= denom;
                        u *= lr;
                        u
                    }
                    OptimizerKind::Sgd { momentum } => {
                        let b = &mut self.first[i];
                        let _ = b.g_mul_scalar_(momentum);
                        *b += &g;
                        &*b * lr
                    }
                    OptimizerKind::Lars { momentum, trust } => {
                        let b = if p.dim() <= 1 {
                            &self.first[i] * momentum + &g * lr
                        } else {
                            let local = trust_ratio(p, &g) * trust * lr;
                            &self.first[i] * momentum + &g * local
                        };
                        self.first[i].copy_(&b);
                        b
                    }
                    OptimizerKind::Lamb { beta1, beta2, eps } => {
                        let m = &self.first[i] * beta1 + &g * (1.0 - beta1);
                        let v = &self.second[i] * beta2 + &g * &g * (1.0 - beta2);
                        self.first[i].copy_(&m);
                        self.second[i].copy_(&v);
                        let mhat = m / (1.0 - beta1.powi(t));
                        let vhat = v / (1.0 - beta2.powi(t));
                        let mut root = vhat;
                        crate::kernels::sqrt_(&mut root);
                        let mut r = mhat / (root + eps);
                        if self.weight_decay > 0.0 {
                            r += &*p * self.weight_decay;
                        }
                        let ratio = trust_ratio(p, &r) * lr;
                        r * ratio
                    }
                };
                *p -= update;
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
    /// lr x sqrt(global batch / 256) (Krizhevsky 2014; the usual rule for
    /// Adam-type optimizers).
    Sqrt,
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
            LrScaling::Sqrt => self.base * (self.global_batch as f64 / 256.0).sqrt(),
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
            OptimizerKind::Lars {
                momentum: 0.9,
                trust: 0.001,
            },
            OptimizerKind::Lamb {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-6,
            },
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

    /// Adam's and SGD's list-at-once update is the tensor-by-tensor one,
    /// to the bit, step after step (the CPU runs each tensor's operation).
    #[test]
    fn the_list_update_gives_the_tensor_by_tensor_bits() {
        let kinds = [
            (OptimizerKind::default(), 0.0),
            (OptimizerKind::default(), 1e-4),
            (OptimizerKind::Sgd { momentum: 0.9 }, 0.0),
            (OptimizerKind::Sgd { momentum: 0.9 }, 5e-4),
        ];
        for (kind, decay) in kinds {
            tch::manual_seed(7);
            let opts = (Kind::Float, tch::Device::Cpu);
            let shapes: [&[i64]; 4] = [&[8, 3, 3, 3], &[8], &[5, 8], &[1]];
            let make = || {
                shapes
                    .iter()
                    .map(|s| Tensor::randn(*s, opts).set_requires_grad(true))
                    .collect::<Vec<_>>()
            };
            let start = make();
            let copy = |ps: &[Tensor]| {
                ps.iter()
                    .map(|p| p.detach().copy().set_requires_grad(true))
                    .collect::<Vec<_>>()
            };
            let mut lists = Optimizer::new(kind, decay, copy(&start));
            let mut each = Optimizer::new(kind, decay, copy(&start));
            for _ in 0..5 {
                let grads = make();
                for opt in [&mut lists, &mut each] {
                    opt.zero_grad();
                    // The third tensor never gets a gradient: both leave it be.
                    let loss = opt
                        .params()
                        .iter()
                        .zip(&grads)
                        .enumerate()
                        .filter(|(i, _)| *i != 2)
                        .map(|(_, (p, g))| (p * g.detach()).sum(Kind::Float))
                        .fold(Tensor::zeros([], opts), |a, b| a + b);
                    loss.backward();
                }
                lists.steps += 1;
                lists.step_lists(0.01);
                each.steps += 1;
                each.step_each(0.01);
            }
            for (a, b) in lists.params().iter().zip(each.params()) {
                assert!(a.equal(b), "{kind:?} {decay}: parameters differ");
            }
            for (a, b) in lists.state().0.iter().zip(&each.state().0) {
                assert!(a.1.equal(&b.1), "{kind:?} {decay}: {} differs", a.0);
            }
        }
    }

    #[test]
    fn the_device_side_trust_ratio_gives_the_host_s_bits() {
        tch::manual_seed(3);
        let opts = (Kind::Float, tch::Device::Cpu);
        let w = Tensor::randn([16, 8, 3, 3], opts);
        let u = Tensor::randn([16, 8, 3, 3], opts) * 1e-3;
        let zero = Tensor::zeros([16, 8, 3, 3], opts);
        let (trust, lr) = (0.001, 0.37);
        for (w, u) in [(&w, &u), (&w, &zero), (&zero, &u)] {
            // The update as the host computed it: f64 scalars into an f32 multiply.
            let host = u * (lr * (trust * trust_ratio_host(w, u)));
            let device = u * (trust_ratio(w, u) * trust * lr);
            assert_eq!(device.kind(), Kind::Float);
            assert!(host.equal(&device), "bit for bit");
        }
        let b = Tensor::randn([8], opts);
        assert_eq!(trust_ratio(&b, &b).double_value(&[]), 1.0);
    }

    #[test]
    fn lars_and_lamb_scale_each_weight_tensor_by_its_trust_ratio() {
        // A 2-D weight with |w| = 5 and gradient g = w (|g| = 5).
        let w0 = [3.0f32, 4.0, 0.0, 0.0];
        let run = |kind: OptimizerKind, decay: f64| {
            let p = Tensor::from_slice(&w0).view([2, 2]).set_requires_grad(true);
            let mut opt = Optimizer::new(kind, decay, vec![p.shallow_clone()]);
            (&p * &p * 0.5).sum(tch::Kind::Float).backward();
            opt.step(0.1);
            Vec::<f32>::try_from(p.detach().view([-1])).unwrap()
        };
        // LARS: local rate = trust x |w| / |g| = 0.5 x 5 / 5: w -= 0.1 x 0.5 x g.
        let v = run(
            OptimizerKind::Lars {
                momentum: 0.9,
                trust: 0.5,
            },
            0.0,
        );
        assert!(
            (v[0] - 3.0 * 0.95).abs() < 1e-6 && (v[1] - 4.0 * 0.95).abs() < 1e-6,
            "{v:?}"
        );
        // LAMB, first step: Adam's direction is sign(g) = (1, 1, 0, 0), |r| = sqrt 2;
        // decoupled decay adds 0.1 w; the step is lr x |w| / |r| x r.
        let v = run(
            OptimizerKind::Lamb {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-12,
            },
            0.1,
        );
        let r = [1.0f64 + 0.3, 1.0 + 0.4];
        let scale = 0.1 * 5.0 / (r[0] * r[0] + r[1] * r[1]).sqrt();
        assert!((v[0] as f64 - (3.0 - scale * r[0])).abs() < 1e-5, "{v:?}");
        assert!((v[1] as f64 - (4.0 - scale * r[1])).abs() < 1e-5, "{v:?}");
        assert_eq!(&v[2..], &[0.0, 0.0]);
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
        let p = plan(LrScaling::Sqrt, 0, LrSchedule::Constant);
        assert!((p.at(0) - 0.1 * 2f64.sqrt()).abs() < 1e-12);
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
