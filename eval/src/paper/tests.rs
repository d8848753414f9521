//! The published numbers, the models fitted to them and the figures drawn from them.

use super::draw::tick_label;
use super::*;

#[test]
fn the_resnet50_figure_carries_the_published_points_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let fig = ScalingSeries::resnet50_hal(&[(1, 2.72), (2, 1.33)]).unwrap();
    let meta = vec![("sciflow:data_blake3".to_string(), "abc<&>".to_string())];
    fig.write(dir.path(), "figure1", &meta).unwrap();
    // The provenance travels inside both files.
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(dir.path().join("figure1.png")).unwrap(),
    ));
    let reader = decoder.read_info().unwrap();
    let text = &reader.info().uncompressed_latin1_text;
    assert!(text
        .iter()
        .any(|t| t.keyword == "sciflow:data_blake3" && t.text == "abc<&>"));
    let svg = std::fs::read_to_string(dir.path().join("figure1.svg")).unwrap();
    assert!(
        svg.contains(
            r#"<metadata id="provenance">{"sciflow:data_blake3":"abc&lt;&amp;>"}</metadata>"#
        ),
        "{}",
        &svg[..300]
    );
    let png = std::fs::read(dir.path().join("figure1.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(dir.path().join("figure1.svg").is_file());
    let back: ScalingSeries =
        serde_json::from_slice(&std::fs::read(dir.path().join("figure1.json")).unwrap()).unwrap();
    assert_eq!(
        back.published,
        vec![
            (2, 791.0),
            (4, 751.0),
            (8, 726.0),
            (16, 704.0),
            (32, 608.0),
            (64, 518.0)
        ]
    );
    assert_eq!(back.model.len(), 7);
    assert_eq!(back.measured, vec![(1, 2.72), (2, 1.33)]);
}

#[test]
fn time_to_train_scales_from_one_gpu_by_the_step_model() {
    let link = Link {
        bandwidth: 1e10,
        latency: 1e-3,
    };
    // The network costs 1/10 of ResNet-50 at 224 px per sample here:
    // ResNet-50 measured at 112 px runs 4x faster than at 224.
    let r50 = resnet50_hal_model().unwrap();
    let runs = [
        RunPoint {
            ranks: 2,
            per_rank_samples_per_second: 90.0,
            seconds: 7200.0,
        },
        RunPoint {
            ranks: 1,
            per_rank_samples_per_second: 100.0,
            seconds: 14400.0,
        },
    ];
    // 224 px ResNet-50 here: 4 / 40 = 0.1 s; the network (its 1-rank
    // run): 0.01 s.
    let rel = relative_cost(&runs, (40.0, 112)).unwrap();
    assert!((rel - 0.1).abs() < 1e-12);
    let net = Network {
        gradients: 1_000_000,
        relative_cost: rel,
    };
    let f = TimeToTrainSeries::build(PaperFigure::AigwHal, &runs, net, 50.0, link).unwrap();
    let c = 0.1 * r50.compute_per_sample;
    assert!((f.inputs.step.compute_per_sample - c).abs() < 1e-15);
    assert_eq!(f.inputs.step.gradient_bytes, 4e6);
    // 64 GPUs: step = 50 c + 2 (63/64) 4e6 / 1e10 + 126 x 1e-3.
    let step64 = 50.0 * c + 2.0 * 63.0 / 64.0 * 4e6 / 1e10 + 0.126;
    let want = 754.0 * step64 / (64.0 * 50.0 * c);
    assert_eq!(
        f.comparisons.len(),
        1,
        "the 1-GPU anchor is not a prediction"
    );
    let at64 = f.comparisons[0];
    assert_eq!(at64.gpus, 64);
    assert!((at64.predicted / want - 1.0).abs() < 1e-12, "{at64:?}");
    assert!((at64.relative_error - (want - 12.4) / 12.4).abs() < 1e-12);
    // The compute at which the model would give 12.4 h exactly.
    let (_, implied) = f.implied_compute_per_step[0];
    let mut exact = f.inputs.step.clone();
    exact.compute_per_sample = implied.unwrap() / 50.0;
    assert!((scaled_hours(&exact, 64, 754.0) - 12.4).abs() < 1e-9);
    // The model passes through the anchor; measured hours sorted by ranks.
    assert_eq!(f.model[0].0, 1);
    assert!((f.model[0].1 - 754.0).abs() < 1e-9);
    assert_eq!(f.measured, vec![(1, 4.0), (2, 2.0)]);
    assert_eq!(f.published, vec![(1, 754.0), (64, 12.4)]);
    // Summit is modelled on 1 GPU and 1-1,024 nodes of 6, compared at 1,536.
    let s = TimeToTrainSeries::build(PaperFigure::AigwSummit, &runs, net, 50.0, link).unwrap();
    assert_eq!(s.model[1].0, 6);
    assert_eq!(s.model.last().unwrap().0, 6144);
    assert_eq!(s.comparisons[0].gpus, 1536);
    // No run, or a run that never moved, has no relative cost; a
    // non-positive cost or batch is an error, not a figure.
    assert!(relative_cost(&[], (40.0, 112)).is_err());
    let mut stuck = runs;
    stuck[1].per_rank_samples_per_second = 0.0;
    assert!(relative_cost(&stuck, (40.0, 112)).is_err());
    let free = Network {
        relative_cost: 0.0,
        ..net
    };
    assert!(TimeToTrainSeries::build(PaperFigure::AidesHal, &runs, free, 50.0, link).is_err());
    assert!(TimeToTrainSeries::build(PaperFigure::AidesHal, &runs, net, 0.0, link).is_err());
}

#[test]
fn tick_labels_keep_only_the_digits_they_need() {
    let l: Vec<String> = [20.0, 2.5, 1.0, 0.05, 0.0, 0.0001]
        .into_iter()
        .map(tick_label)
        .collect();
    assert_eq!(l, ["20", "2.5", "1", "0.05", "0", "1e-4"]);
}

#[test]
fn published_numbers_are_as_published() {
    let t: Vec<f64> = RESNET50_HAL
        .iter()
        .filter_map(|p| p.per_gpu_throughput)
        .collect();
    assert_eq!(t, vec![791.0, 751.0, 726.0, 704.0, 608.0, 518.0]);
    // 518 img/s at 64 GPUs is 65 % of 791 at 2.
    assert!((518.0f64 / 791.0 - 0.655).abs() < 0.001);
    assert_eq!(AIGW_HAL[1].hours, Some(12.4));
    assert!((AIDES_HAL[1].hours.unwrap() * 60.0 - 2.7).abs() < 1e-12);
    assert_eq!(AIGW_BRIDGES[0].gpus, 72);
    assert_eq!(AIGW_SUMMIT[0].gpus, 1536);
}

#[test]
fn the_calibrated_resnet50_model_reproduces_hal_throughput() {
    let m = resnet50_hal_model().expect("the HAL points determine the model");
    let cmp = predict_throughputs(&m, RESNET50_HAL);
    assert_eq!(cmp.len(), 6);
    // A three-parameter model through six points: within 15 % everywhere.
    for c in &cmp {
        assert!(c.relative_error.abs() < 0.15, "{c:?}");
    }
    // Compute per image near the single-GPU rate (~1.2-1.4 ms on a V100).
    assert!((0.0008..0.002).contains(&m.compute_per_sample), "{m:?}");
    // Time to 90 epochs on 64 GPUs: the published 1 h 08 min, within 30 %.
    let t = predict_at(&m, RESNET50_HAL, IMAGENET_TRAIN, 90.0);
    let at64 = t.iter().find(|c| c.gpus == 64).unwrap();
    assert!(at64.relative_error.abs() < 0.3, "{at64:?}");
}

#[test]
fn the_published_constants_match_an_independent_transcription() {
    // data/paper/published.csv was transcribed separately from these
    // constants; a typo in either shows here.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("data/paper/published.csv")).unwrap();
    let all: Vec<(&str, &str, &[Published])> = vec![
        ("resnet50", "HAL", RESNET50_HAL),
        ("aigw", "HAL", AIGW_HAL),
        ("aigw", "Bridges-AI", AIGW_BRIDGES),
        ("aides", "HAL", AIDES_HAL),
        ("aigw", "Summit", AIGW_SUMMIT),
    ];
    let mut rows = 0;
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.splitn(6, ',').collect();
        let num = |s: &str| (!s.is_empty()).then(|| s.parse::<f64>().unwrap());
        let (exp, sys, gpus) = (f[0], f[1], f[2].parse::<usize>().unwrap());
        let set = all
            .iter()
            .find(|(e, s, _)| *e == exp && *s == sys)
            .unwrap_or_else(|| panic!("no constants for {exp} on {sys}"))
            .2;
        let p = set
            .iter()
            .find(|p| p.gpus == gpus)
            .unwrap_or_else(|| panic!("{exp} on {sys}: no point at {gpus} GPUs"));
        assert_eq!(p.per_gpu_throughput, num(f[3]), "{line}");
        match (p.hours, num(f[4])) {
            (Some(a), Some(b)) => assert!((a - b).abs() < 1e-9 * b, "{line}: {a}"),
            (a, b) => assert_eq!(a, b, "{line}"),
        }
        assert_eq!(p.source, f[5], "{line}");
        rows += 1;
    }
    assert_eq!(rows, all.iter().map(|s| s.2.len()).sum::<usize>());
    // The shared notes state the HAL ResNet-50 throughputs too.
    match std::fs::read_to_string(root.join("../shared/FORMATS.md")) {
        Ok(formats) => {
            let flat = formats.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(
                flat.contains("791, 751, 726, 704, 608, 518 img/s at 2, 4, 8, 16, 32, 64 V100s"),
                "FORMATS.md no longer states the throughputs the CSV holds"
            );
        }
        Err(_) => eprintln!("note: ../shared/FORMATS.md absent; checked the CSV only"),
    }
}
