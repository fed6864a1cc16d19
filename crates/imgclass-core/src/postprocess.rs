//! Scores to answers: softmax and top-k.

use serde::{Deserialize, Serialize};

use crate::labels::Labels;

/// One class of a result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub index: usize,
    pub label: String,
    pub probability: f32,
}

/// Numerically stable softmax: subtracts the maximum before exponentiating,
/// so large logits cannot overflow. Non-finite inputs give a uniform answer
/// rather than NaNs.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() || logits.iter().any(|x| x.is_nan()) {
        let n = logits.len().max(1) as f32;
        return vec![1.0 / n; logits.len()];
    }
    let mut out: Vec<f32> = logits.iter().map(|&x| (x - max).exp()).collect();
    let sum: f32 = out.iter().sum();
    for v in &mut out {
        *v /= sum;
    }
    out
}

/// The `k` most probable classes, most probable first; ties keep the lower
/// index first so results are deterministic.
pub fn top_k(probabilities: &[f32], k: usize, labels: &Labels) -> Vec<Prediction> {
    let mut idx: Vec<usize> = (0..probabilities.len()).collect();
    let k = k.min(idx.len());
    let cmp = |a: &usize, b: &usize| {
        probabilities[*b]
            .total_cmp(&probabilities[*a])
            .then(a.cmp(b))
    };
    if k < idx.len() && k > 0 {
        idx.select_nth_unstable_by(k - 1, cmp);
    }
    idx.truncate(k);
    idx.sort_by(cmp);
    idx.into_iter()
        .map(|i| Prediction {
            index: i,
            label: labels.get(i).into_owned(),
            probability: probabilities[i],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_is_stable_and_sums_to_one() {
        let p = softmax(&[1000.0, 1001.0, 999.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[1] > p[0] && p[0] > p[2]);
        let q = softmax(&[0.0, 1.0, -1.0]);
        for (a, b) in p.iter().zip(&q) {
            assert!((a - b).abs() < 1e-6);
        }
        let n = softmax(&[f32::NAN, 1.0]);
        assert_eq!(n, vec![0.5, 0.5]);
    }

    #[test]
    fn top_k_orders_and_labels() {
        let labels = Labels::parse("a\nb\nc\nd");
        let t = top_k(&[0.1, 0.4, 0.4, 0.1], 3, &labels);
        let got: Vec<_> = t.iter().map(|p| (p.index, p.label.as_str())).collect();
        assert_eq!(got, vec![(1, "b"), (2, "c"), (0, "a")]);
        assert_eq!(top_k(&[0.5, 0.5], 10, &labels).len(), 2);
        assert!(top_k(&[0.5, 0.5], 0, &labels).is_empty());
    }
}
