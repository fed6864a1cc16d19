//! Tensor data in the binary tensor data extension's form: little-endian
//! elements without padding; BYTES elements as a 4-byte little-endian
//! length followed by the bytes.

use bytes::Bytes;

use crate::tensor::Tensor;
use crate::{DataType, OipError};

/// The bytes a fixed-size tensor of `shape` takes, `None` for BYTES or on overflow.
pub(crate) fn fixed_len(datatype: DataType, shape: &[usize]) -> Option<usize> {
    crate::tensor::element_count(shape)?.checked_mul(datatype.element_size()?)
}

/// Decodes `data` (exactly the input's `binary_data_size` bytes) into a
/// tensor of `datatype` and `shape` (whose element count the caller has
/// already bounded). Slices `data` without copying.
pub(crate) fn decode(
    input: &str,
    datatype: DataType,
    shape: Vec<usize>,
    count: usize,
    data: Bytes,
) -> Result<Tensor, OipError> {
    if datatype != DataType::Bytes {
        let expected = fixed_len(datatype, &shape).ok_or_else(|| OipError::Tensor {
            tensor: input.to_string(),
            reason: format!("shape {shape:?} of {datatype} is too large"),
        })?;
        if expected != data.len() {
            return Err(OipError::BinarySize {
                input: input.to_string(),
                datatype,
                shape,
                expected,
                declared: data.len(),
            });
        }
        return Tensor::from_le_bytes(datatype, shape, data);
    }
    // Every element needs its 4-byte length: check before reserving room
    // for `count` entries, so a declared shape cannot make us allocate.
    if count > data.len() / 4 {
        return Err(OipError::BytesElement {
            input: input.to_string(),
            index: data.len() / 4,
            reason: format!(
                "shape {shape:?} has {count} elements but binary_data_size {} cannot hold {count} 4-byte lengths",
                data.len()
            ),
        });
    }
    let mut elements = Vec::with_capacity(count);
    let mut at = 0usize;
    for index in 0..count {
        let bad = |reason: String| OipError::BytesElement {
            input: input.to_string(),
            index,
            reason,
        };
        let Some(prefix) = data.get(at..at + 4) else {
            return Err(bad(format!(
                "the data ends at byte {} before its 4-byte length",
                data.len()
            )));
        };
        let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        let start = at + 4;
        let left = data.len() - start;
        if len > left {
            return Err(bad(format!(
                "its length says {len} bytes but only {left} are left"
            )));
        }
        elements.push(data.slice(start..start + len));
        at = start + len;
    }
    if at != data.len() {
        return Err(OipError::BytesElement {
            input: input.to_string(),
            index: count,
            reason: format!(
                "{} bytes follow the last of the {count} elements",
                data.len() - at
            ),
        });
    }
    Tensor::from_bytes(shape, elements)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefixed(items: &[&[u8]]) -> Bytes {
        let t = Tensor::from_bytes(
            vec![items.len()],
            items.iter().map(|i| Bytes::copy_from_slice(i)).collect(),
        )
        .unwrap();
        let mut out = Vec::new();
        t.write_binary(&mut out);
        Bytes::from(out)
    }

    #[test]
    fn bytes_elements_round_trip() {
        let data = prefixed(&[b"hello", b"", b"\xff\x00"]);
        let t = decode("x", DataType::Bytes, vec![3], 3, data).unwrap();
        let e = t.elements().unwrap();
        assert_eq!(&e[0][..], b"hello");
        assert_eq!(&e[1][..], b"");
        assert_eq!(&e[2][..], b"\xff\x00");
    }

    #[test]
    fn bytes_elements_malformed() {
        let data = prefixed(&[b"hello"]);
        // truncated element
        let cut = data.slice(..data.len() - 1);
        let e = decode("x", DataType::Bytes, vec![1], 1, cut).unwrap_err();
        assert!(matches!(e, OipError::BytesElement { index: 0, .. }), "{e}");
        // truncated length prefix on the second element
        let mut two = data.to_vec();
        two.extend_from_slice(&[1, 0]);
        let e = decode("x", DataType::Bytes, vec![2], 2, Bytes::from(two.clone())).unwrap_err();
        assert!(matches!(e, OipError::BytesElement { index: 1, .. }), "{e}");
        // trailing bytes after the declared elements
        let e = decode("x", DataType::Bytes, vec![1], 1, Bytes::from(two)).unwrap_err();
        assert!(e.to_string().contains("follow the last"), "{e}");
        // a length of 4 GiB - 1 does not allocate
        let huge = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 1]);
        assert!(decode("x", DataType::Bytes, vec![1], 1, huge).is_err());
        // more elements than 4-byte lengths fit
        let e = decode("x", DataType::Bytes, vec![1000], 1000, data).unwrap_err();
        assert!(e.to_string().contains("cannot hold"), "{e}");
    }

    #[test]
    fn fixed_size_must_match_exactly() {
        let data = Bytes::from(vec![0u8; 24]);
        let t = decode("x", DataType::Fp32, vec![2, 3], 6, data.clone()).unwrap();
        assert_eq!(t.to_f32().unwrap(), vec![0.0; 6]);
        let e = decode("x", DataType::Fp32, vec![2, 2], 4, data.clone()).unwrap_err();
        assert!(
            matches!(
                e,
                OipError::BinarySize {
                    expected: 16,
                    declared: 24,
                    ..
                }
            ),
            "{e}"
        );
        let t = decode("x", DataType::Uint8, vec![24], 24, data).unwrap();
        assert_eq!(t.le_bytes().unwrap().len(), 24);
    }
}
