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
}

/// Computes the metrics from true labels and per-sample class probabilities.
pub fn classification_metrics(
    labels: &[i64],
    probs: &[Vec<f32>],
    class_names: &[String],
) -> Metrics {
    let k = class_names.len();
    let mut confusion = vec![vec![0usize; k]; k];
    for (y, p) in labels.iter().zip(probs) {
        let pred = argmax(p);
        confusion[*y as usize][pred] += 1;
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
    }
}

fn argmax(p: &[f32]) -> usize {
    p.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
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
    fn auc_counts_ties_as_half_and_needs_both_classes() {
        assert_eq!(roc_auc(&[0.5, 0.5], &[true, false]), Some(0.5));
        assert_eq!(roc_auc(&[0.1, 0.9], &[true, true]), None);
        assert_eq!(roc_auc(&[0.1, 0.9, 0.3], &[false, true, false]), Some(1.0));
    }
}
