//! Times training steps of one of our networks on random data, on one process
//! or data-parallel under `mpirun`: forward, backward, gradient averaging
//! (with more than one rank) and the optimizer update, exactly as the
//! training stages do them. Used by `bench/train_step.sh` and
//! `bench/scaling.sh`.
//!
//! ```text
//! cargo run --example step_bench -- --model wavenet --batch 64 --steps 20
//! mpirun -n 2 target/debug/examples/step_bench --model xception_mini --threads 1
//! step_bench --model resnet50 --size 224 --batch 256 --device cuda
//! ```
//!
//! Rank 0 prints one JSON line: seconds per step (median over the timed
//! steps), of which allreduce, and samples per second over all ranks.

use std::time::Instant;

use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

use sciflow_train::model::{build, ModelConfig, ModelInfo};
use sciflow_train::optim::{Optimizer, OptimizerKind};
use sciflow_train::wavenet::{WaveNet, WaveNetConfig};
use sciflow_train::{DeviceSpec, Precision, Reproducible};

/// The loss of a batch's output.
type LossFn = Box<dyn Fn(&Tensor) -> Tensor>;

struct Args {
    model: String,
    batch: i64,
    steps: usize,
    warmup: usize,
    threads: Option<usize>,
    size: i64,
    width: usize,
    samples: i64,
    device: DeviceSpec,
    precision: Precision,
    reproducible: Reproducible,
}

fn parse() -> Args {
    let mut a = Args {
        model: "wavenet".into(),
        batch: 64,
        steps: 20,
        warmup: 3,
        threads: None,
        size: 64,
        width: 16,
        samples: 2050,
        device: DeviceSpec::Cpu,
        precision: Precision::Fp32,
        reproducible: Reproducible::Native,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let v = argv.get(i + 1).cloned().unwrap_or_default();
        let num = |s: &str| -> usize {
            s.parse().unwrap_or_else(|_| {
                eprintln!("{}: expected a number, got `{s}`", argv[i]);
                std::process::exit(2)
            })
        };
        match argv[i].as_str() {
            "--model" => a.model = v,
            "--batch" => a.batch = num(&v) as i64,
            "--steps" => a.steps = num(&v),
            "--warmup" => a.warmup = num(&v),
            "--threads" => a.threads = Some(num(&v)),
            "--size" => a.size = num(&v) as i64,
            "--width" => a.width = num(&v),
            "--samples" => a.samples = num(&v) as i64,
            "--precision" => {
                a.precision = serde_json::from_value(serde_json::json!(v)).unwrap_or_else(|e| {
                    eprintln!("--precision: {e}");
                    std::process::exit(2)
                })
            }
            "--reproducible" => {
                a.reproducible = Reproducible::from_name(&v).unwrap_or_else(|| {
                    eprintln!("--reproducible: expected native or portable, got `{v}`");
                    std::process::exit(2)
                })
            }
            "--device" => {
                a.device = v.parse().unwrap_or_else(|e| {
                    eprintln!("--device: {e}");
                    std::process::exit(2)
                })
            }
            "-h" | "--help" => {
                println!(
                    "step_bench [--model wavenet|small_cnn|xception_mini|resnet18|resnet50] \
                     [--batch N] [--steps N] [--warmup N] [--threads N] [--size PX] \
                     [--width N] [--samples N] [--device cpu|auto|cuda|cuda:N] [--precision fp32|bf16] \
                     [--reproducible native|portable]"
                );
                std::process::exit(0)
            }
            other => {
                eprintln!("unknown argument `{other}` (try --help)");
                std::process::exit(2)
            }
        }
        i += 2;
    }
    a
}

fn main() {
    let a = parse();
    // Before any tensor: the libraries choose their CPU kernels at first use.
    if let Err(e) = sciflow_train::kernels::pin(a.reproducible) {
        eprintln!("{e}");
        std::process::exit(1)
    }
    let comm = sciflow_train::dist::init().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let threads = sciflow_train::set_threads_for_rank(comm.local_size(), a.threads);
    let device = a.device.resolve().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    if device.is_cuda() && a.reproducible == Reproducible::Native {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    tch::manual_seed(comm.rank() as i64);
    let vs = nn::VarStore::new(device);
    let opts = (Kind::Float, device);
    let (net, x, loss_of): (Box<dyn ModuleT>, Tensor, LossFn) = if a.model == "wavenet" {
        let cfg = WaveNetConfig {
            input_stride: 8,
            ..Default::default()
        };
        let net = WaveNet::new(&vs.root(), 2, 3, &cfg);
        let y = Tensor::randn([a.batch, 3], opts);
        let x = Tensor::randn([a.batch, 2, a.samples], opts);
        (
            Box::new(net),
            x,
            Box::new(move |out: &Tensor| (out - &y).square().mean(Kind::Float)),
        )
    } else {
        let arch: ModelConfig = serde_json::from_value(serde_json::json!({
            "arch": a.model, "width": a.width
        }))
        .unwrap_or_else(|e| {
            eprintln!("unknown model `{}`: {e}", a.model);
            std::process::exit(2)
        });
        let classes = if a.model.starts_with("resnet") {
            1000
        } else {
            2
        };
        let info = ModelInfo {
            model: arch,
            in_channels: 3,
            image_size: a.size as usize,
            class_names: (0..classes).map(|i| i.to_string()).collect(),
            dataset_blake3: String::new(),
            seed: 0,
            world_size: comm.size(),
            epochs: 1,
            created_by: "step_bench".into(),
        };
        let net = build(&vs, &info);
        let y = Tensor::randint(classes as i64, [a.batch], (Kind::Int64, device));
        let x = Tensor::randn([a.batch, 3, a.size, a.size], opts);
        (
            net,
            x,
            Box::new(move |out: &Tensor| out.cross_entropy_for_logits(&y)),
        )
    };
    // As the training stages do on a GPU: channels-last weights and images.
    let x = if device.is_cuda() {
        sciflow_train::learner::channels_last_weights(&vs);
        sciflow_train::shim::channels_last(&x).unwrap_or(x)
    } else {
        x
    };
    let kind = OptimizerKind::Sgd { momentum: 0.9 };
    let mut opt = Optimizer::new(kind, 0.0, vs.trainable_variables());
    let mut step_s = Vec::new();
    let mut reduce_s = Vec::new();
    for i in 0..a.warmup + a.steps {
        comm.barrier();
        let t = Instant::now();
        let loss = a
            .precision
            .run(device, || loss_of(&net.forward_t(&x, true)));
        opt.zero_grad();
        loss.backward();
        let r = if comm.size() > 1 {
            sciflow_train::allreduce::average_gradients(opt.params(), &*comm, 0)
        } else {
            0.0
        };
        opt.step(0.01);
        // Make the step's work finish before the clock stops.
        let _ = loss.double_value(&[]);
        if i >= a.warmup {
            step_s.push(t.elapsed().as_secs_f64());
            reduce_s.push(r);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (step, reduce) = (median(&mut step_s), median(&mut reduce_s));
    if comm.rank() == 0 {
        let params: i64 = opt.params().iter().map(|p| p.numel() as i64).sum();
        println!(
            "{}",
            serde_json::json!({
                "model": a.model,
                "ranks": comm.size(),
                "threads": threads,
                "device": sciflow_train::learner::describe(device),
                "precision": a.precision,
                "kernels": sciflow_train::kernels::current().describe(),
                "batch_per_rank": a.batch,
                "parameters": params,
                "step_seconds": step,
                "allreduce_seconds": reduce,
                "samples_per_second": (a.batch as f64 * comm.size() as f64) / step,
            })
        );
    }
}
