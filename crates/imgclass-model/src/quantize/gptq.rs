//! Error-feedback rounding of weights (GPTQ: Frantar et al., "GPTQ:
//! Accurate Post-Training Quantization for Generative Pre-trained
//! Transformers", 2022, which applies Optimal Brain Quantization one
//! weight row at a time).
//!
//! Rounding every weight to its nearest step treats their errors as
//! independent; but a Conv's output is w·x, and inputs are correlated,
//! so the error one weight's rounding leaves can be cancelled by nudging
//! the weights not yet rounded. With H = Σ x·xᵀ over calibration inputs
//! (`hessian`), the change of output energy is (w − q)ᵀ H (w − q).
//! Weights are rounded one input column at a time; after each, the rest
//! of the row absorbs the error in the direction H⁻¹ says costs least.
//! The scale of each row stays the nearest-rounding one (max|w| / 127),
//! so only which integer each weight becomes changes.
//!
//! Columns are taken in decreasing order of H's diagonal (the inputs with
//! most energy first: the paper's "act-order"; measured without it, mean
//! |Δp| rose on all three zoo sizes). H is damped by a tenth of its mean
//! diagonal (the paper uses 1%): 25 photos give the last layers fewer
//! patches than a row has weights (the Gemm sees 25 for 1280), so H is
//! an estimate, and damping pulls the result towards nearest rounding.
//! Measured on the 48 test photos (25 calibration + 23 held out), mean
//! |Δp| of the fp32 top-1 for Lite0/1/2: nearest 0.021/0.021/0.020;
//! damping 0.1: 0.018/0.017/0.018; 1: 0.016/0.018/0.020; 0.01 overfits
//! the calibration photos (Lite0 top-1 kept on 43/48, against 46 nearest).
//! Top-1 agreement itself moves by a photo or two either way with any of
//! these changes (near-ties), so it cannot rank them. On 96 photos (the
//! 48 plus two held-out wheels) 0.1 gives 0.016/0.017/0.019, 0.03 gives
//! 0.015/0.020/0.019, 0.3 gives 0.016/0.019/0.022 and nearest
//! 0.022/0.022/0.018: 0.1 is lowest summed over the three (0.052, against
//! 0.054, 0.057 and 0.062).

use nalgebra::DMatrix;

use super::hessian::{Geometry, Hessian};
use super::qdq::WEIGHT_QMAX;

/// Damping added to H's diagonal, as a fraction of its mean diagonal.
const DAMP: f64 = 0.1;

/// Rounds `rows` weight rows of H's size (row-major in `w`; row r has
/// step `scales[r]`) to int8 steps. `None` when calibration saw nothing
/// of these inputs or H is not positive definite even after damping:
/// the caller rounds to nearest.
pub(super) fn round(w: &[f32], scales: &[f32], h: &DMatrix<f64>) -> Option<Vec<i8>> {
    let d = h.nrows();
    if d == 0 || !w.len().is_multiple_of(d) || w.len() / d != scales.len() {
        return None;
    }
    let mean = h.diagonal().sum() / d as f64;
    if !(mean.is_finite() && mean > 0.0) {
        return None;
    }
    // Act-order: the most energetic inputs first (ties by index, so the
    // order is the same on every run).
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&a, &b| h[(b, b)].total_cmp(&h[(a, a)]).then(a.cmp(&b)));
    let mut hp = DMatrix::from_fn(d, d, |i, j| h[(order[i], order[j])]);
    for i in 0..d {
        // An input that was always 0 has no row or column: give it a unit
        // diagonal so the matrix stays invertible; its weights round to
        // nearest and pass no error on.
        if hp[(i, i)] == 0.0 {
            hp[(i, i)] = 1.0;
        }
        hp[(i, i)] += DAMP * mean;
    }
    let inverse = hp.cholesky()?.inverse();
    // H⁻¹ = L·Lᵀ; the update after column i uses row i of Lᵀ, that is
    // column i of L, contiguous in nalgebra's column-major storage.
    let l = inverse.cholesky()?.unpack();
    let l = l.as_slice();
    let mut q = vec![0i8; w.len()];
    let mut row = vec![0f64; d];
    for ((weights, out), &s) in w.chunks_exact(d).zip(q.chunks_exact_mut(d)).zip(scales) {
        let s = f64::from(s);
        for (slot, &j) in row.iter_mut().zip(&order) {
            *slot = f64::from(weights[j]);
        }
        for i in 0..d {
            let step = (row[i] / s)
                .round_ties_even()
                .clamp(-f64::from(WEIGHT_QMAX), f64::from(WEIGHT_QMAX));
            out[order[i]] = step as i8;
            let column = &l[i * d..(i + 1) * d];
            let err = (row[i] - step * s) / column[i];
            for (r, &lij) in row[i + 1..].iter_mut().zip(&column[i + 1..]) {
                *r -= err * lij;
            }
        }
    }
    Some(q)
}

/// Rounds the weight of a Conv ([O, I/groups, kh, kw]) or Gemm ([N, K]
/// with `axis` 0, [K, N] with `axis` 1) whose inputs `hessian` measured,
/// with `scales` per output channel. A group [`round`] has no answer for
/// (a depthwise channel whose input was always 0) keeps `nearest`, the
/// weight rounded to nearest in the same layout. `None` where the weight
/// does not fit the Hessian, or no group could be rounded.
pub(super) fn round_weights(
    w: &[f32],
    dims: &[i64],
    axis: usize,
    scales: &[f32],
    hessian: &Hessian,
    nearest: &[i8],
) -> Option<Vec<i8>> {
    if nearest.len() != w.len() {
        return None;
    }
    let d = hessian.geometry.patch();
    match hessian.geometry {
        Geometry::Gemm { k } if axis == 1 => {
            // [K, N]: the rows to round are its columns.
            let n = usize::try_from(*dims.get(1)?).ok()?;
            if w.len() != k * n {
                return None;
            }
            let rows: Vec<f32> = (0..n * k).map(|i| w[(i % k) * n + i / k]).collect();
            let q = round(&rows, scales, hessian.group(0))?;
            Some((0..k * n).map(|i| q[(i % n) * k + i / n]).collect())
        }
        Geometry::Gemm { .. } => round(w, scales, hessian.group(0)),
        Geometry::Conv { groups, .. } => {
            let out = scales.len();
            if w.len() != out * d || !out.is_multiple_of(groups) {
                return None;
            }
            let per = out / groups;
            let mut q = Vec::with_capacity(w.len());
            let mut fed_back = false;
            for g in 0..groups {
                let span = g * per * d..(g + 1) * per * d;
                let rows = &w[span.clone()];
                match round(rows, &scales[g * per..(g + 1) * per], hessian.group(g)) {
                    Some(rounded) => {
                        fed_back = true;
                        q.extend(rounded);
                    }
                    None => q.extend_from_slice(&nearest[span]),
                }
            }
            fed_back.then_some(q)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Σ over patches of (w·x − q·s·x)², the output error GPTQ minimises.
    fn output_error(w: &[f32], q: &[i8], s: f32, patches: &[Vec<f64>]) -> f64 {
        patches
            .iter()
            .map(|x| {
                let e: f64 = w
                    .iter()
                    .zip(q)
                    .zip(x)
                    .map(|((&w, &q), &x)| (f64::from(w) - f64::from(q) * f64::from(s)) * x)
                    .sum();
                e * e
            })
            .sum()
    }

    /// A deterministic spread of values in [-1, 1).
    fn noise(seed: u64, n: usize) -> Vec<f64> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 11) as f64 / (1u64 << 52) as f64 - 1.0
            })
            .collect()
    }

    #[test]
    fn rounding_with_error_feedback_beats_nearest_on_correlated_inputs() {
        let d = 16;
        // Correlated inputs: a shared component plus a little noise each.
        let patches: Vec<Vec<f64>> = (0..200)
            .map(|p| {
                let shared = noise(p, 1)[0];
                noise(1000 + p, d)
                    .into_iter()
                    .map(|e| shared + 0.2 * e)
                    .collect()
            })
            .collect();
        let h = DMatrix::from_fn(d, d, |i, j| patches.iter().map(|x| x[i] * x[j]).sum());
        let w: Vec<f32> = noise(7, d).iter().map(|&v| v as f32).collect();
        // Coarse steps make rounding errors large enough to matter.
        let s = 0.1;
        let nearest: Vec<i8> = w.iter().map(|&v| (v / s).round_ties_even() as i8).collect();
        let q = round(&w, &[s], &h).unwrap();
        let (e_nearest, e_gptq) = (
            output_error(&w, &nearest, s, &patches),
            output_error(&w, &q, s, &patches),
        );
        assert!(
            e_gptq < 0.5 * e_nearest,
            "output error {e_gptq} with error feedback, {e_nearest} to nearest"
        );
        // Each weight still moves by only a few steps.
        for (a, b) in q.iter().zip(&nearest) {
            assert!(
                (i32::from(*a) - i32::from(*b)).abs() <= 3,
                "{q:?} vs {nearest:?}"
            );
        }
    }

    #[test]
    fn a_gemm_weight_is_rounded_the_same_in_either_layout() {
        // [N, K] = [2, 3] and its transpose [K, N], with correlated inputs.
        let patches: Vec<Vec<f64>> = (0..50)
            .map(|p| {
                let shared = noise(p, 1)[0];
                noise(500 + p, 3)
                    .into_iter()
                    .map(|e| shared + 0.3 * e)
                    .collect()
            })
            .collect();
        let mut h = Hessian::new(Geometry::Gemm { k: 3 });
        let flat: Vec<f32> = patches.iter().flatten().map(|&v| v as f32).collect();
        h.see(&[patches.len(), 3], &flat).unwrap();
        let nk = [0.33f32, -0.71, 0.12, 0.05, 0.64, -0.27];
        let kn: Vec<f32> = (0..6).map(|i| nk[(i % 2) * 3 + i / 2]).collect();
        let scales = [0.1, 0.2];
        let a = round_weights(&nk, &[2, 3], 0, &scales, &h, &[0; 6]).unwrap();
        let b = round_weights(&kn, &[3, 2], 1, &scales, &h, &[0; 6]).unwrap();
        let b_as_nk: Vec<i8> = (0..6).map(|i| b[(i % 3) * 2 + i / 3]).collect();
        assert_eq!(a, b_as_nk);
    }

    #[test]
    fn a_depthwise_channel_never_seen_keeps_nearest_rounding() {
        // Two depthwise channels, 1×2 kernels; channel 1's input is always 0.
        let geometry = Geometry::Conv {
            groups: 2,
            channels: 1,
            kernel: [1, 2],
            strides: [1, 1],
            pads: [0; 4],
            dilations: [1, 1],
        };
        let mut h = Hessian::new(geometry);
        h.see(&[1, 2, 1, 3], &[1.0, 0.9, 1.1, 0.0, 0.0, 0.0])
            .unwrap();
        let w = [0.26f32, 0.26, 0.33, -0.33];
        let nearest = [3, 3, 3, -3];
        let q = round_weights(&w, &[2, 1, 1, 2], 0, &[0.1, 0.1], &h, &nearest).unwrap();
        assert_eq!(&q[2..], &nearest[2..], "the unseen channel");
        // In the seen one, the weight with more input energy (the second:
        // 0.81 + 1.21 against 1 + 0.81) is rounded first, 0.26 → 0.3; the
        // first, whose input is almost the same, absorbs that +0.04 and
        // goes down to 0.2.
        assert_eq!(&q[..2], &[2, 3]);
        let zero = Hessian::new(Geometry::Gemm { k: 2 });
        assert_eq!(
            round_weights(&[0.1, 0.2], &[1, 2], 0, &[0.1], &zero, &[1, 2]),
            None
        );
    }

    #[test]
    fn independent_inputs_round_to_nearest() {
        // A diagonal H: no input can make up for another.
        let h = DMatrix::from_diagonal_element(3, 3, 2.0);
        let w = [0.26f32, -0.04, 0.5];
        assert_eq!(round(&w, &[0.1], &h), Some(vec![3, 0, 5]));
    }

    #[test]
    fn nothing_seen_means_no_answer() {
        assert_eq!(round(&[0.1, 0.2], &[0.1], &DMatrix::zeros(2, 2)), None);
        assert_eq!(
            round(&[0.1, 0.2, 0.3], &[0.1], &DMatrix::identity(2, 2)),
            None
        );
    }
}
