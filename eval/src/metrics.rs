//! Classification metrics.

use serde::{Deserialize, Serialize};

/// Per-class precision, recall and F1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// Class name.
    pub name: String,
    /// Of the samples predicted as this class, the fraction that are.
    pub precision: f64,
    /// Of the samples of this class, the fraction predicted as it.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// Samples of this class.
    pub support: usize,
}

/// Metrics of a classifier on a labelled set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Samples scored.
    pub samples: usize,
    /// Fraction predicted correctly.
    pub accuracy: f64,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
    /// Per class.
    pub classes: Vec<ClassMetrics>,
    /// Unweighted mean of the per-class F1.
    pub macro_f1: f64,
    /// Area under the ROC curve of the last class's probability (two classes
    /// only; `None` when a class is absent).
    pub auc: Option<f64>,
    /// Per-class calibration of the predicted probabilities.
    pub calibration: Vec<ClassCalibration>,
}

/// Samples whose predicted probability of a class fell in `[lo, hi)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    /// Lower edge.
    pub lo: f64,
    /// Upper edge (the last bin includes 1).
    pub hi: f64,
    /// Samples in the bin.
    pub count: usize,
    /// Their mean predicted probability of the class.
    pub mean_predicted: f64,
    /// The fraction of them that are of the class.
    pub observed: f64,
}

/// How well one class's predicted probabilities match observed frequencies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassCalibration {
    /// Class name.
    pub name: String,
    /// Expected calibration error: the count-weighted mean of
    /// |observed - mean predicted| over the bins.
    pub ece: f64,
    /// Brier score of the one-vs-rest probability: mean (p - [y == class])^2.
    pub brier: f64,
    /// The reliability diagram, equal-width bins over [0, 1]; empty bins are kept
    /// with count 0.
    pub bins: Vec<CalibrationBin>,
}

/// Number of bins of the reliability diagrams.
pub const CALIBRATION_BINS: usize = 10;

/// One-vs-rest calibration of every class's probability.
pub fn calibration(
    labels: &[i64],
    probs: &[Vec<f32>],
    class_names: &[String],
) -> Vec<ClassCalibration> {
    let n = labels.len();
    class_names
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let mut sum_p = [0.0f64; CALIBRATION_BINS];
            let mut hits = [0usize; CALIBRATION_BINS];
            let mut count = [0usize; CALIBRATION_BINS];
            let mut brier = 0.0;
            for (y, p) in labels.iter().zip(probs) {
                let p = p[c] as f64;
                let is = (*y as usize == c) as usize;
                let b = ((p * CALIBRATION_BINS as f64) as usize).min(CALIBRATION_BINS - 1);
                sum_p[b] += p;
                hits[b] += is;
                count[b] += 1;
                brier += (p - is as f64).powi(2);
            }
            let bins: Vec<CalibrationBin> = (0..CALIBRATION_BINS)
                .map(|b| {
                    let k = count[b].max(1) as f64;
                    CalibrationBin {
                        lo: b as f64 / CALIBRATION_BINS as f64,
                        hi: (b + 1) as f64 / CALIBRATION_BINS as f64,
                        count: count[b],
                        mean_predicted: sum_p[b] / k,
                        observed: hits[b] as f64 / k,
                    }
                })
                .collect();
            let ece = bins
                .iter()
                .map(|b| b.count as f64 * (b.observed - b.mean_predicted).abs())
                .sum::<f64>()
                / n.max(1) as f64;
            ClassCalibration {
                name: name.clone(),
                ece,
                brier: brier / n.max(1) as f64,
                bins,
            }
        })
        .collect()
}

/// Computes the metrics from true labels and per-sample class probabilities.
pub fn classification_metrics(
    labels: &[i64],
    probs: &[Vec<f32>],
    class_names: &[String],
) -> Metrics {
    let predicted: Vec<usize> = probs.iter().map(|p| argmax(p)).collect();
    classification_metrics_at(labels, probs, class_names, &predicted)
}

/// [`classification_metrics`] with the decisions given (e.g. from a threshold
/// other than the most probable class); probabilities still give AUC and calibration.
pub fn classification_metrics_at(
    labels: &[i64],
    probs: &[Vec<f32>],
    class_names: &[String],
    predicted: &[usize],
) -> Metrics {
    let k = class_names.len();
    let mut confusion = vec![vec![0usize; k]; k];
    for (y, pred) in labels.iter().zip(predicted) {
        confusion[*y as usize][*pred] += 1;
    }
    let samples = labels.len();
    let correct: usize = (0..k).map(|i| confusion[i][i]).sum();
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let classes: Vec<ClassMetrics> = (0..k)
        .map(|c| {
            let tp = confusion[c][c];
            let predicted: usize = (0..k).map(|t| confusion[t][c]).sum();
            let support: usize = confusion[c].iter().sum();
            let precision = ratio(tp, predicted);
            let recall = ratio(tp, support);
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            ClassMetrics {
                name: class_names[c].clone(),
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect();
    let macro_f1 = classes.iter().map(|c| c.f1).sum::<f64>() / k.max(1) as f64;
    let auc = (k == 2).then(|| {
        let scores: Vec<f64> = probs.iter().map(|p| p[1] as f64).collect();
        let positive: Vec<bool> = labels.iter().map(|&y| y == 1).collect();
        roc_auc(&scores, &positive)
    });
    Metrics {
        samples,
        accuracy: ratio(correct, samples),
        confusion,
        classes,
        macro_f1,
        auc: auc.flatten(),
        calibration: calibration(labels, probs, class_names),
    }
}

/// The most probable class.
pub fn argmax(p: &[f32]) -> usize {
    p.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

/// The threshold on the second class's probability that maximises accuracy on
/// (labels, p1): the midpoint between neighbouring distinct scores with the
/// most correct decisions (ties: the one nearest 0.5).
pub fn best_threshold(labels: &[i64], p1: &[f32]) -> f64 {
    let mut order: Vec<usize> = (0..p1.len()).collect();
    order.sort_by(|&a, &b| p1[a].total_cmp(&p1[b]));
    // Threshold below everything: all predicted class 1.
    let mut correct = labels.iter().filter(|&&y| y == 1).count() as i64;
    let (mut best, mut best_t) = (correct, 0.0f64);
    let score = |t: f64| (t - 0.5).abs();
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && p1[order[j + 1]] == p1[order[i]] {
            j += 1;
        }
        for &s in &order[i..=j] {
            correct += if labels[s] == 1 { -1 } else { 1 };
        }
        let t = if j + 1 < order.len() {
            (p1[order[j]] as f64 + p1[order[j + 1]] as f64) / 2.0
        } else {
            1.0
        };
        if correct > best || (correct == best && score(t) < score(best_t)) {
            best = correct;
            best_t = t;
        }
        i = j + 1;
    }
    best_t
}

/// ROC AUC as the Mann-Whitney statistic: the probability that a random
/// positive scores above a random negative, ties counting one half.
pub fn roc_auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    // Sum of the positives' ranks, with tied scores sharing their mean rank.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let mean_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += (i..=j).filter(|&t| positive[order[t]]).count() as f64 * mean_rank;
        i = j + 1;
    }
    let u = rank_sum - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Some(u / (n_pos * n_neg) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_case() {
        let names = vec!["e".to_string(), "s".to_string()];
        // true: e e e s s ; predicted: e e s s e
        let labels = [0, 0, 0, 1, 1];
        let probs: Vec<Vec<f32>> = [0.1f32, 0.2, 0.6, 0.9, 0.4]
            .iter()
            .map(|&p| vec![1.0 - p, p])
            .collect();
        let m = classification_metrics(&labels, &probs, &names);
        assert_eq!(m.confusion, vec![vec![2, 1], vec![1, 1]]);
        assert!((m.accuracy - 0.6).abs() < 1e-12);
        assert!((m.classes[0].precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.classes[1].recall - 0.5).abs() < 1e-12);
        // Pairs (pos, neg): 0.9 beats all 3; 0.4 beats 0.1 and 0.2 -> 5 of 6.
        assert!((m.auc.unwrap() - 5.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn calibration_by_hand() {
        let names = vec!["e".to_string(), "s".to_string()];
        // p(s) = 0.05, 0.05 (bin 0, both e), 0.72, 0.78 (bin 7: one s), 1.0 (bin 9, s).
        let labels = [0, 0, 0, 1, 1];
        let probs: Vec<Vec<f32>> = [0.05f32, 0.05, 0.72, 0.78, 1.0]
            .iter()
            .map(|&p| vec![1.0 - p, p])
            .collect();
        let cal = calibration(&labels, &probs, &names);
        let s = &cal[1];
        assert_eq!(s.bins.len(), 10);
        assert_eq!(
            s.bins.iter().map(|b| b.count).collect::<Vec<_>>(),
            [2, 0, 0, 0, 0, 0, 0, 2, 0, 1]
        );
        assert!((s.bins[7].mean_predicted - 0.75).abs() < 1e-6);
        assert!((s.bins[7].observed - 0.5).abs() < 1e-12);
        // ECE = (2 * 0.05 + 2 * 0.25 + 1 * 0) / 5 = 0.12.
        assert!((s.ece - 0.12).abs() < 1e-6, "{}", s.ece);
        // Brier = (0.05^2 * 2 + 0.72^2 + 0.22^2 + 0) / 5.
        let brier = (2.0 * 0.0025 + 0.5184 + 0.0484) / 5.0;
        assert!((s.brier - brier).abs() < 1e-6);
        // With two classes, the other class's probabilities mirror these.
        assert!((cal[0].brier - brier).abs() < 1e-6);
    }

    #[test]
    fn best_threshold_by_hand() {
        // p1: 0.1 (0), 0.3 (0), 0.55 (0), 0.6 (1), 0.9 (1): any threshold in
        // (0.55, 0.6) is perfect; the midpoint is 0.575.
        let t = best_threshold(&[0, 0, 0, 1, 1], &[0.1, 0.3, 0.55, 0.6, 0.9]);
        assert!((t - 0.575).abs() < 1e-6, "{t}");
        // Already separable at 0.5 with room: the threshold nearest 0.5 wins ties.
        let t = best_threshold(&[0, 1], &[0.2, 0.8]);
        assert!((t - 0.5).abs() < 1e-6, "{t}");
    }

    #[test]
    fn auc_counts_ties_as_half_and_needs_both_classes() {
        assert_eq!(roc_auc(&[0.5, 0.5], &[true, false]), Some(0.5));
        assert_eq!(roc_auc(&[0.1, 0.9], &[true, true]), None);
        assert_eq!(roc_auc(&[0.1, 0.9, 0.3], &[false, true, false]), Some(1.0));
    }
}
