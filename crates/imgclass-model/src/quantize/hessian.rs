//! The second moments of what a Conv or Gemm multiplies its weights by:
//! H = Σ x·xᵀ over every input patch x seen in calibration, one matrix per
//! group. `gptq` rounds a weight row w to minimise the change of w·x over
//! those patches, (w − q)ᵀ H (w − q), which needs exactly this matrix.
//!
//! A patch is the weight row's view of the input: for a Conv, the
//! channels of its group × the kernel window at one output position
//! (zero where the window overhangs the padding), in the weight's own
//! (channel, row, column) order; for a Gemm, the input row. Sums are
//! products of f64s in a fixed order (photos in order, nalgebra's
//! one-thread matrix product), so the same photos give the same matrix.

use nalgebra::{DMatrix, DMatrixView};

use super::QuantizeError;

/// How a node turns its input into patches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Geometry {
    /// A 2-D Conv, NCHW input.
    Conv {
        groups: usize,
        /// Input channels per group.
        channels: usize,
        kernel: [usize; 2],
        strides: [usize; 2],
        /// Top, left, bottom, right (ONNX `pads` order: begins, then ends).
        pads: [usize; 4],
        dilations: [usize; 2],
    },
    /// A Gemm: every row of its [N, K] input is a patch.
    Gemm { k: usize },
}

impl Geometry {
    fn groups(&self) -> usize {
        match self {
            Geometry::Conv { groups, .. } => *groups,
            Geometry::Gemm { .. } => 1,
        }
    }

    /// Patch length: the length of one weight row.
    pub fn patch(&self) -> usize {
        match self {
            Geometry::Conv {
                channels, kernel, ..
            } => channels * kernel[0] * kernel[1],
            Geometry::Gemm { k } => *k,
        }
    }
}

/// Σ x·xᵀ per group, and how many patches went into it.
#[derive(Clone, Debug)]
pub(super) struct Hessian {
    pub geometry: Geometry,
    /// One d × d matrix per group, d = [`Geometry::patch`].
    sums: Vec<DMatrix<f64>>,
    pub patches: u64,
}

impl Hessian {
    pub fn new(geometry: Geometry) -> Self {
        let d = geometry.patch();
        Hessian {
            sums: vec![DMatrix::zeros(d, d); geometry.groups()],
            geometry,
            patches: 0,
        }
    }

    /// The matrix of group `g` (d × d, symmetric).
    pub fn group(&self, g: usize) -> &DMatrix<f64> {
        &self.sums[g]
    }

    /// Adds the patches of one input tensor of `shape`.
    pub fn see(&mut self, shape: &[usize], values: &[f32]) -> Result<(), QuantizeError> {
        let mismatch = || {
            QuantizeError::Graph(format!(
                "an input of shape {shape:?} does not fit {:?}",
                self.geometry
            ))
        };
        if shape.iter().product::<usize>() != values.len() {
            return Err(mismatch());
        }
        let d = self.geometry.patch();
        match self.geometry.clone() {
            Geometry::Gemm { k } => {
                if shape.len() != 2 || shape[1] != k {
                    return Err(mismatch());
                }
                let x: Vec<f64> = values.iter().map(|&v| f64::from(v)).collect();
                add_gram(&mut self.sums[0], &x, shape[0], d);
                self.patches += shape[0] as u64;
            }
            Geometry::Conv {
                groups,
                channels,
                kernel,
                strides,
                pads,
                dilations,
            } => {
                let [n, c, h, w] = *shape else {
                    return Err(mismatch());
                };
                if c != groups * channels {
                    return Err(mismatch());
                }
                let out = |size: usize, axis: usize| {
                    let span = dilations[axis] * (kernel[axis] - 1) + 1;
                    let padded = size + pads[axis] + pads[axis + 2];
                    (padded >= span).then(|| (padded - span) / strides[axis] + 1)
                };
                let (Some(oh), Some(ow)) = (out(h, 0), out(w, 1)) else {
                    return Err(mismatch());
                };
                let positions = oh * ow;
                let mut patches = vec![0f64; positions * d];
                for image in values.chunks_exact(c * h * w).take(n) {
                    for g in 0..groups {
                        patches.fill(0.0);
                        for (p, row) in patches.chunks_exact_mut(d).enumerate() {
                            let (y0, x0) = (p / ow * strides[0], p % ow * strides[1]);
                            let mut i = 0;
                            for ch in g * channels..(g + 1) * channels {
                                let plane = &image[ch * h * w..(ch + 1) * h * w];
                                for ky in 0..kernel[0] {
                                    let y = (y0 + ky * dilations[0]).checked_sub(pads[0]);
                                    for kx in 0..kernel[1] {
                                        let x = (x0 + kx * dilations[1]).checked_sub(pads[1]);
                                        if let (Some(y), Some(x)) = (y, x)
                                            && y < h
                                            && x < w
                                        {
                                            row[i] = f64::from(plane[y * w + x]);
                                        }
                                        i += 1;
                                    }
                                }
                            }
                        }
                        add_gram(&mut self.sums[g], &patches, positions, d);
                    }
                    self.patches += positions as u64;
                }
            }
        }
        Ok(())
    }
}

/// sums += Xᵀ X for X, `rows` patches of `d` values, one after another.
fn add_gram(sums: &mut DMatrix<f64>, x: &[f64], rows: usize, d: usize) {
    // Patches one after another are the columns of a column-major d × rows
    // matrix: Xᵀ.
    let xt = DMatrixView::from_slice(x, d, rows);
    sums.gemm(1.0, &xt, &xt.transpose(), 1.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Σ x·xᵀ the slow way, from explicit patches.
    fn gram(patches: &[Vec<f64>]) -> DMatrix<f64> {
        let d = patches[0].len();
        DMatrix::from_fn(d, d, |i, j| patches.iter().map(|p| p[i] * p[j]).sum())
    }

    #[test]
    fn gemm_rows_are_the_patches() {
        let mut h = Hessian::new(Geometry::Gemm { k: 3 });
        h.see(&[2, 3], &[1.0, 2.0, 3.0, -1.0, 0.0, 4.0]).unwrap();
        assert_eq!(
            h.group(0),
            &gram(&[vec![1.0, 2.0, 3.0], vec![-1.0, 0.0, 4.0]])
        );
        assert_eq!(h.patches, 2);
        assert!(h.see(&[1, 4], &[0.0; 4]).is_err());
    }

    #[test]
    fn conv_patches_follow_the_window_padding_and_stride() {
        // One channel, 3×3 input 1..9, 2×2 kernel, stride 2, one pixel of
        // padding on top and left: output 2×2; patches (row-major window):
        // [0 0 0 1] [0 0 2 3] [0 4 0 7] [5 6 8 9].
        let geometry = Geometry::Conv {
            groups: 1,
            channels: 1,
            kernel: [2, 2],
            strides: [2, 2],
            pads: [1, 1, 0, 0],
            dilations: [1, 1],
        };
        let mut h = Hessian::new(geometry);
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        h.see(&[1, 1, 3, 3], &x).unwrap();
        let expected = gram(&[
            vec![0.0, 0.0, 0.0, 1.0],
            vec![0.0, 0.0, 2.0, 3.0],
            vec![0.0, 4.0, 0.0, 7.0],
            vec![5.0, 6.0, 8.0, 9.0],
        ]);
        assert_eq!(h.group(0), &expected);
        assert_eq!(h.patches, 4);
    }

    #[test]
    fn depthwise_groups_keep_their_own_channel() {
        // Two channels, one per group, 1×1 kernel: each group's matrix is
        // the sum of squares of its own channel only.
        let geometry = Geometry::Conv {
            groups: 2,
            channels: 1,
            kernel: [1, 1],
            strides: [1, 1],
            pads: [0; 4],
            dilations: [1, 1],
        };
        let mut h = Hessian::new(geometry);
        h.see(&[1, 2, 1, 2], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(h.group(0)[(0, 0)], 5.0);
        assert_eq!(h.group(1)[(0, 0)], 25.0);
        assert!(h.see(&[1, 3, 1, 2], &[0.0; 6]).is_err());
    }
}
