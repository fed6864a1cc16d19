//! Tensor data in JSON form: the `data` array of an input or output,
//! flat or nested row-major.

use base64::Engine as _;
use bytes::Bytes;
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::tensor::Tensor;
use crate::{DataType, OipError};

/// How a JSON string in a BYTES input's `data` becomes bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JsonBytes {
    /// The string's own UTF-8 bytes: Triton's behaviour, and what
    /// tritonclient sends with `binary_data=False` (it refuses non-UTF-8).
    #[default]
    Utf8,
    /// The string is base64 (standard or URL-safe alphabet, padded or not)
    /// of the bytes: how JSON clients send images to imgclass.
    Base64,
}

/// Leaves of a nested `data` array in row-major order.
fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        // serde_json refuses documents nested deeper than 128, which bounds this recursion.
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other),
    }
}

/// Decodes base64 in any of the common alphabets.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let t = text.trim();
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(t).ok())
}

/// Encodes one JSON leaf as little-endian bytes of `datatype`, or names
/// what was expected.
fn push_fixed(datatype: DataType, v: &Value, out: &mut Vec<u8>) -> Result<(), &'static str> {
    fn int<T: TryFrom<i64>>(v: &Value) -> Option<T> {
        v.as_i64().and_then(|x| T::try_from(x).ok())
    }
    fn uint<T: TryFrom<u64>>(v: &Value) -> Option<T> {
        v.as_u64().and_then(|x| T::try_from(x).ok())
    }
    match datatype {
        DataType::Bool => out.push(u8::from(v.as_bool().ok_or("true or false")?)),
        DataType::Uint8 => out.push(uint::<u8>(v).ok_or("a whole number from 0 to 255")?),
        DataType::Uint16 => out.extend(
            uint::<u16>(v)
                .ok_or("a whole number from 0 to 65535")?
                .to_le_bytes(),
        ),
        DataType::Uint32 => out.extend(
            uint::<u32>(v)
                .ok_or("a whole number from 0 to 2^32-1")?
                .to_le_bytes(),
        ),
        DataType::Uint64 => out.extend(v.as_u64().ok_or("a whole number from 0")?.to_le_bytes()),
        DataType::Int8 => out.push(
            int::<i8>(v)
                .ok_or("a whole number from -128 to 127")?
                .to_le_bytes()[0],
        ),
        DataType::Int16 => out.extend(
            int::<i16>(v)
                .ok_or("a whole number from -32768 to 32767")?
                .to_le_bytes(),
        ),
        DataType::Int32 => out.extend(
            int::<i32>(v)
                .ok_or("a whole number within INT32")?
                .to_le_bytes(),
        ),
        DataType::Int64 => out.extend(
            v.as_i64()
                .ok_or("a whole number within INT64")?
                .to_le_bytes(),
        ),
        DataType::Fp32 => {
            let x = v.as_f64().ok_or("a number")? as f32;
            if !x.is_finite() {
                return Err("a number within FP32 range");
            }
            out.extend(x.to_le_bytes());
        }
        DataType::Fp64 => out.extend(v.as_f64().ok_or("a number")?.to_le_bytes()),
        DataType::Fp16 | DataType::Bf16 | DataType::Bytes => {
            unreachable!("caller handles {datatype}")
        }
    }
    Ok(())
}

/// One BYTES element from JSON: a string (see [`JsonBytes`]) or
/// `{"b64": "..."}` (always base64).
fn bytes_element(v: &Value, mode: JsonBytes) -> Result<Bytes, &'static str> {
    match v {
        Value::String(s) => match mode {
            JsonBytes::Utf8 => Ok(Bytes::copy_from_slice(s.as_bytes())),
            JsonBytes::Base64 => base64_decode(s).map(Bytes::from).ok_or("valid base64"),
        },
        Value::Object(m) => {
            let s = m
                .get("b64")
                .and_then(Value::as_str)
                .ok_or("a string or {\"b64\": \"<base64>\"}")?;
            base64_decode(s)
                .map(Bytes::from)
                .ok_or("valid base64 in \"b64\"")
        }
        _ => Err(match mode {
            JsonBytes::Utf8 => "a string",
            JsonBytes::Base64 => "a base64 string",
        }),
    }
}

/// Decodes an input's JSON `data` into a tensor of `datatype` and `shape`
/// (whose element count `count` the caller has already bounded).
pub(crate) fn decode(
    input: &str,
    datatype: DataType,
    shape: Vec<usize>,
    count: usize,
    data: &Value,
    mode: JsonBytes,
) -> Result<Tensor, OipError> {
    if matches!(datatype, DataType::Fp16 | DataType::Bf16) {
        return Err(OipError::JsonUnsupported {
            input: input.to_string(),
            datatype,
        });
    }
    let Value::Array(_) = data else {
        return Err(OipError::JsonValue {
            input: input.to_string(),
            datatype,
            index: 0,
            expected: "an array (\"data\" is a flat or nested array)",
        });
    };
    let mut leaves = Vec::new();
    flatten(data, &mut leaves);
    if leaves.len() != count {
        return Err(OipError::ElementCount {
            input: input.to_string(),
            shape,
            expected: count,
            found: leaves.len(),
        });
    }
    let bad = |index: usize, expected: &'static str| OipError::JsonValue {
        input: input.to_string(),
        datatype,
        index,
        expected,
    };
    if datatype == DataType::Bytes {
        let elements = leaves
            .iter()
            .enumerate()
            .map(|(i, v)| bytes_element(v, mode).map_err(|e| bad(i, e)))
            .collect::<Result<Vec<_>, _>>()?;
        return Tensor::from_bytes(shape, elements);
    }
    let size = datatype.element_size().expect("fixed-size type");
    let mut le = Vec::with_capacity(count * size);
    for (i, v) in leaves.iter().enumerate() {
        push_fixed(datatype, v, &mut le).map_err(|e| bad(i, e))?;
    }
    Tensor::from_le_bytes(datatype, shape, Bytes::from(le))
}

/// The flat `data` array of an output, serialized straight from the
/// tensor (FP32 with the shortest digits that round-trip, no value tree).
/// BYTES elements become strings (invalid UTF-8 replaced by U+FFFD: JSON
/// cannot carry raw bytes; binary output carries them exactly). NaN and
/// infinities have no JSON form: serde_json writes `null`. FP16/BF16 have
/// no JSON form and the response encoder always sends them as binary.
pub(crate) struct JsonData<'a>(pub &'a Tensor);

impl Serialize for JsonData<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.0;
        if let Some(elements) = t.elements() {
            return s.collect_seq(elements.iter().map(|e| String::from_utf8_lossy(e)));
        }
        let b = t.le_bytes().expect("fixed-size tensor");
        macro_rules! each {
            ($ty:ty) => {
                s.collect_seq(
                    b.chunks_exact(std::mem::size_of::<$ty>())
                        .map(|c| <$ty>::from_le_bytes(c.try_into().expect("chunk size"))),
                )
            };
        }
        match t.datatype() {
            DataType::Bool => s.collect_seq(b.iter().map(|&x| x != 0)),
            DataType::Uint8 => each!(u8),
            DataType::Uint16 => each!(u16),
            DataType::Uint32 => each!(u32),
            DataType::Uint64 => each!(u64),
            DataType::Int8 => each!(i8),
            DataType::Int16 => each!(i16),
            DataType::Int32 => each!(i32),
            DataType::Int64 => each!(i64),
            DataType::Fp32 => each!(f32),
            DataType::Fp64 => each!(f64),
            DataType::Fp16 | DataType::Bf16 | DataType::Bytes => Err(serde::ser::Error::custom(
                format!("{} has no JSON form", t.datatype()),
            )),
        }
    }
}

/// True when `datatype` can be written as JSON `data`.
pub(crate) fn has_json_form(datatype: DataType) -> bool {
    !matches!(datatype, DataType::Fp16 | DataType::Bf16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn encoded(t: &Tensor) -> String {
        serde_json::to_string(&JsonData(t)).unwrap()
    }

    fn dec(dt: DataType, shape: &[usize], v: Value) -> Result<Tensor, OipError> {
        let n = shape.iter().product();
        decode("in", dt, shape.to_vec(), n, &v, JsonBytes::Utf8)
    }

    #[test]
    fn nested_and_flat_agree() {
        let a = dec(DataType::Fp32, &[2, 2], json!([[1, 2], [3.5, 4]])).unwrap();
        let b = dec(DataType::Fp32, &[2, 2], json!([1, 2, 3.5, 4])).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_f32().unwrap(), vec![1.0, 2.0, 3.5, 4.0]);
    }

    #[test]
    fn integer_ranges_are_checked() {
        let t = dec(DataType::Int8, &[2], json!([-128, 127])).unwrap();
        assert_eq!(&t.le_bytes().unwrap()[..], &[0x80, 0x7f]);
        let e = dec(DataType::Int8, &[1], json!([128])).unwrap_err();
        assert!(matches!(e, OipError::JsonValue { index: 0, .. }), "{e}");
        assert!(dec(DataType::Uint8, &[1], json!([-1])).is_err());
        assert!(dec(DataType::Uint32, &[1], json!([1.5])).is_err());
        assert!(dec(DataType::Fp32, &[1], json!([1e300])).is_err());
        assert!(dec(DataType::Fp32, &[1], json!(["1"])).is_err());
        let t = dec(DataType::Bool, &[2], json!([true, false])).unwrap();
        assert_eq!(&t.le_bytes().unwrap()[..], &[1, 0]);
        assert!(dec(DataType::Bool, &[1], json!([1])).is_err());
        let t = dec(DataType::Uint64, &[1], json!([u64::MAX])).unwrap();
        assert_eq!(encoded(&t), json!([u64::MAX]).to_string());
    }

    #[test]
    fn counts_must_match_the_shape() {
        let e = dec(DataType::Fp32, &[3], json!([1, 2])).unwrap_err();
        assert!(
            matches!(
                e,
                OipError::ElementCount {
                    expected: 3,
                    found: 2,
                    ..
                }
            ),
            "{e}"
        );
        assert!(dec(DataType::Fp32, &[1], json!(1)).is_err());
    }

    #[test]
    fn half_precision_is_binary_only() {
        let e = dec(DataType::Fp16, &[1], json!([1])).unwrap_err();
        assert!(matches!(e, OipError::JsonUnsupported { .. }));
        assert!(!has_json_form(DataType::Bf16));
    }

    #[test]
    fn bytes_as_utf8_or_base64() {
        let t = dec(DataType::Bytes, &[2], json!(["héllo", {"b64": "aGk="}])).unwrap();
        let e = t.elements().unwrap();
        assert_eq!(&e[0][..], "héllo".as_bytes());
        assert_eq!(&e[1][..], b"hi");
        let b64 = |v: Value| decode("in", DataType::Bytes, vec![1], 1, &v, JsonBytes::Base64);
        for text in ["aGk/Pz8+", "aGk_Pz8-", " aGk/Pz8+\n"] {
            assert_eq!(
                &b64(json!([text])).unwrap().elements().unwrap()[0][..],
                b"hi???>"
            );
        }
        assert!(b64(json!(["***"])).is_err());
        assert!(b64(json!([7])).is_err());
        assert!(b64(json!([{"b64": 7}])).is_err());
        assert!(dec(DataType::Bytes, &[1], json!([null])).is_err());
    }

    #[test]
    fn encode_round_trips() {
        for (dt, v) in [
            (DataType::Fp32, json!([0.5, -2.0, 3.25])),
            // f32 written with its own shortest digits, not widened to f64's
            (DataType::Fp32, json!([0.525, 0.1, 1e-7])),
            (DataType::Int32, json!([-1, 0, 7])),
            (DataType::Uint16, json!([0, 1, 65535])),
            (DataType::Fp64, json!([0.1, 0.2, 0.3])),
            (DataType::Bool, json!([true, false, true])),
            (DataType::Bytes, json!(["a", "", "ü"])),
        ] {
            let t = dec(dt, &[3], v.clone()).unwrap();
            assert_eq!(encoded(&t), v.to_string(), "{dt}");
        }
    }
}
