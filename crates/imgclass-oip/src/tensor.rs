//! A tensor whose data is known to match its shape and datatype.

use bytes::Bytes;

use crate::{DataType, OipError};

/// A tensor: datatype, shape and data that always agree (the constructors
/// check). Fixed-size types keep their elements as little-endian bytes, so
/// binary request data is used without a copy.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    datatype: DataType,
    shape: Vec<usize>,
    data: Data,
}

#[derive(Debug, Clone, PartialEq)]
enum Data {
    /// BYTES: one entry per element.
    Elements(Vec<Bytes>),
    /// Every other type: `count × element_size` little-endian bytes.
    Fixed(Bytes),
}

/// Elements in `shape`, `None` on overflow.
pub(crate) fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

fn mismatch(name: &str, reason: String) -> OipError {
    OipError::Tensor {
        tensor: name.to_string(),
        reason,
    }
}

impl Tensor {
    /// A BYTES tensor, one element per entry of `elements`.
    pub fn from_bytes(shape: Vec<usize>, elements: Vec<Bytes>) -> Result<Self, OipError> {
        let want = element_count(&shape);
        if want != Some(elements.len()) {
            return Err(mismatch(
                "BYTES",
                format!("shape {shape:?} does not hold {} elements", elements.len()),
            ));
        }
        Ok(Tensor {
            datatype: DataType::Bytes,
            shape,
            data: Data::Elements(elements),
        })
    }

    /// An FP32 tensor.
    pub fn from_f32(shape: Vec<usize>, values: &[f32]) -> Result<Self, OipError> {
        let mut le = Vec::with_capacity(values.len() * 4);
        for v in values {
            le.extend_from_slice(&v.to_le_bytes());
        }
        Self::from_le_bytes(DataType::Fp32, shape, Bytes::from(le))
    }

    /// A tensor of a fixed-size type from its little-endian bytes.
    pub fn from_le_bytes(
        datatype: DataType,
        shape: Vec<usize>,
        le: Bytes,
    ) -> Result<Self, OipError> {
        let Some(size) = datatype.element_size() else {
            return Err(mismatch(
                datatype.as_str(),
                "BYTES tensors are built from elements".into(),
            ));
        };
        let want = element_count(&shape).and_then(|n| n.checked_mul(size));
        if want != Some(le.len()) {
            return Err(mismatch(
                datatype.as_str(),
                format!("shape {shape:?} does not hold {} bytes", le.len()),
            ));
        }
        Ok(Tensor {
            datatype,
            shape,
            data: Data::Fixed(le),
        })
    }

    pub fn datatype(&self) -> DataType {
        self.datatype
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements (the product of the shape).
    pub fn element_count(&self) -> usize {
        match &self.data {
            Data::Elements(e) => e.len(),
            Data::Fixed(b) => b.len() / self.datatype.element_size().unwrap_or(1),
        }
    }

    /// The elements of a BYTES tensor, `None` for other types.
    pub fn elements(&self) -> Option<&[Bytes]> {
        match &self.data {
            Data::Elements(e) => Some(e),
            Data::Fixed(_) => None,
        }
    }

    /// The little-endian bytes of a fixed-size tensor, `None` for BYTES.
    pub fn le_bytes(&self) -> Option<&Bytes> {
        match &self.data {
            Data::Fixed(b) => Some(b),
            Data::Elements(_) => None,
        }
    }

    /// The values of an FP32 tensor, row-major; `None` for other types.
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        let b = self
            .le_bytes()
            .filter(|_| self.datatype == DataType::Fp32)?;
        Some(
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        )
    }

    /// Size of the binary form (for BYTES: 4-byte length + bytes per element).
    pub fn binary_len(&self) -> usize {
        match &self.data {
            Data::Fixed(b) => b.len(),
            Data::Elements(e) => e.iter().map(|x| 4 + x.len()).sum(),
        }
    }

    /// Appends the binary form: little-endian elements, or for BYTES each
    /// element as a 4-byte little-endian length followed by its bytes.
    pub fn write_binary(&self, out: &mut Vec<u8>) {
        match &self.data {
            Data::Fixed(b) => out.extend_from_slice(b),
            Data::Elements(e) => {
                for x in e {
                    // Elements come from a body or a model output; none reaches 4 GiB.
                    let len = u32::try_from(x.len()).expect("BYTES element under 4 GiB");
                    out.extend_from_slice(&len.to_le_bytes());
                    out.extend_from_slice(x);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_check_the_shape() {
        let t = Tensor::from_f32(vec![2, 2], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(t.element_count(), 4);
        assert_eq!(t.binary_len(), 16);
        assert_eq!(t.to_f32().unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
        assert!(t.elements().is_none());
        assert!(Tensor::from_f32(vec![3], &[1.0, 2.0]).is_err());
        assert!(Tensor::from_f32(vec![usize::MAX, 2], &[]).is_err());
        assert!(Tensor::from_bytes(vec![2], vec![Bytes::from_static(b"a")]).is_err());
        assert!(Tensor::from_le_bytes(DataType::Bytes, vec![1], Bytes::new()).is_err());
        assert!(
            Tensor::from_le_bytes(DataType::Int16, vec![3], Bytes::from_static(&[0; 5])).is_err()
        );
    }

    #[test]
    fn bytes_binary_form_is_length_prefixed() {
        let t = Tensor::from_bytes(
            vec![1, 2],
            vec![Bytes::from_static(b"ab"), Bytes::from_static(b"")],
        )
        .unwrap();
        let mut out = Vec::new();
        t.write_binary(&mut out);
        assert_eq!(out, b"\x02\0\0\0ab\0\0\0\0");
        assert_eq!(t.binary_len(), out.len());
        assert!(t.to_f32().is_none());
    }

    #[test]
    fn empty_shape_is_a_scalar() {
        let t = Tensor::from_f32(vec![], &[7.5]).unwrap();
        assert_eq!(t.element_count(), 1);
        let z = Tensor::from_f32(vec![0, 3], &[]).unwrap();
        assert_eq!(z.element_count(), 0);
    }
}
