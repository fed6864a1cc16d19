//! Just enough protobuf to write (and read back) an ONNX `ModelProto`.
//!
//! Why hand-written: imgclass only ever handles the handful of message
//! types its own converter and quantizer produce, so a code generator (and
//! its build-time `protoc`) or a dependency on a whole inference engine for
//! its generated types would be more machinery than the few hundred lines
//! here. [`decode`] reads exactly what this encoder writes and rejects
//! anything else with a clear error instead of silently dropping it. Field
//! numbers follow `onnx/onnx.proto` (a proto2 file, so repeated scalars are
//! written unpacked, as its own serialiser does; every reader accepts both).
//!
//! Messages are encoded in one pass straight into the output buffer: each
//! length prefix is obtained by first running the same encoder into a byte
//! counter, so the 18 MB of weights are copied exactly once.

/// Where encoded bytes go: a buffer, or a counter used to size a nested
/// message before writing its length prefix.
pub trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Counts bytes instead of storing them.
#[derive(Debug, Default)]
pub struct Counter(pub usize);

impl Sink for Counter {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

/// A protobuf message that can encode its fields.
pub trait Message {
    fn encode<S: Sink>(&self, s: &mut S);

    /// Encoded size in bytes (without any enclosing tag/length).
    fn encoded_len(&self) -> usize {
        let mut c = Counter(0);
        self.encode(&mut c);
        c.0
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode(&mut out);
        out
    }
}

const WIRE_VARINT: u64 = 0;
const WIRE_LEN: u64 = 2;

/// Base-128 varint, least significant group first.
pub fn put_varint<S: Sink>(s: &mut S, mut v: u64) {
    let mut buf = [0u8; 10];
    let mut n = 0;
    loop {
        let low = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            buf[n] = low;
            n += 1;
            break;
        }
        buf[n] = low | 0x80;
        n += 1;
    }
    s.put(&buf[..n]);
}

fn put_key<S: Sink>(s: &mut S, field: u32, wire: u64) {
    put_varint(s, (u64::from(field) << 3) | wire);
}

/// An `int64`/`int32`/enum field. Negative values are sign-extended to 64 bits
/// and so take 10 bytes, exactly as protobuf specifies for `int64`.
pub fn put_int<S: Sink>(s: &mut S, field: u32, v: i64) {
    put_key(s, field, WIRE_VARINT);
    put_varint(s, v as u64);
}

pub fn put_bytes<S: Sink>(s: &mut S, field: u32, bytes: &[u8]) {
    put_key(s, field, WIRE_LEN);
    put_varint(s, bytes.len() as u64);
    s.put(bytes);
}

pub fn put_str<S: Sink>(s: &mut S, field: u32, text: &str) {
    put_bytes(s, field, text.as_bytes());
}

pub fn put_message<S: Sink, M: Message>(s: &mut S, field: u32, m: &M) {
    put_key(s, field, WIRE_LEN);
    put_varint(s, m.encoded_len() as u64);
    m.encode(s);
}

mod decode;

pub use decode::{DecodeError, decode_model};

/// `TensorProto.DataType` values used here.
pub const FLOAT: i32 = 1;
pub const UINT8: i32 = 2;
pub const INT8: i32 = 3;
pub const INT32: i32 = 6;

/// Name of a `TensorProto.DataType` for messages.
pub fn data_type_name(t: i32) -> &'static str {
    match t {
        FLOAT => "float32",
        UINT8 => "uint8",
        INT8 => "int8",
        INT32 => "int32",
        _ => "other",
    }
}

/// `ModelProto`.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub ir_version: i64,
    pub producer_name: String,
    pub producer_version: String,
    pub doc_string: String,
    pub graph: Graph,
    /// (domain, version); "" is the default ONNX domain.
    pub opset_imports: Vec<(String, i64)>,
}

struct OpsetId<'a>(&'a str, i64);

impl Message for OpsetId<'_> {
    fn encode<S: Sink>(&self, s: &mut S) {
        put_str(s, 1, self.0);
        put_int(s, 2, self.1);
    }
}

impl Message for Model {
    fn encode<S: Sink>(&self, s: &mut S) {
        put_int(s, 1, self.ir_version);
        put_str(s, 2, &self.producer_name);
        put_str(s, 3, &self.producer_version);
        put_str(s, 6, &self.doc_string);
        put_message(s, 7, &self.graph);
        for (domain, version) in &self.opset_imports {
            put_message(s, 8, &OpsetId(domain, *version));
        }
    }
}

/// `GraphProto`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Graph {
    pub name: String,
    pub nodes: Vec<Node>,
    pub initializers: Vec<TensorData>,
    pub doc_string: String,
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
}

impl Message for Graph {
    fn encode<S: Sink>(&self, s: &mut S) {
        for n in &self.nodes {
            put_message(s, 1, n);
        }
        put_str(s, 2, &self.name);
        for t in &self.initializers {
            put_message(s, 5, t);
        }
        put_str(s, 10, &self.doc_string);
        for v in &self.inputs {
            put_message(s, 11, v);
        }
        for v in &self.outputs {
            put_message(s, 12, v);
        }
    }
}

/// `NodeProto` in the default domain.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub op_type: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attributes: Vec<Attribute>,
}

impl Message for Node {
    fn encode<S: Sink>(&self, s: &mut S) {
        for i in &self.inputs {
            put_str(s, 1, i);
        }
        for o in &self.outputs {
            put_str(s, 2, o);
        }
        put_str(s, 3, &self.name);
        put_str(s, 4, &self.op_type);
        for a in &self.attributes {
            put_message(s, 5, a);
        }
    }
}

/// `AttributeProto`, limited to the kinds the converter uses.
#[derive(Debug, Clone, PartialEq)]
pub enum Attribute {
    Int(String, i64),
    Ints(String, Vec<i64>),
}

impl Attribute {
    pub fn name(&self) -> &str {
        match self {
            Attribute::Int(n, _) | Attribute::Ints(n, _) => n,
        }
    }
}

/// `AttributeProto.AttributeType` values.
const ATTR_INT: i64 = 2;
const ATTR_INTS: i64 = 7;

impl Message for Attribute {
    fn encode<S: Sink>(&self, s: &mut S) {
        match self {
            Attribute::Int(name, v) => {
                put_str(s, 1, name);
                put_int(s, 3, *v);
                put_int(s, 20, ATTR_INT);
            }
            Attribute::Ints(name, vs) => {
                put_str(s, 1, name);
                for v in vs {
                    put_int(s, 8, *v);
                }
                put_int(s, 20, ATTR_INTS);
            }
        }
    }
}

/// A `TensorProto` initializer (float32, uint8, int8 or int32), data kept
/// as little-endian bytes (`raw_data`) so encoding is a single copy.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorData {
    pub name: String,
    pub dims: Vec<i64>,
    pub data_type: i32,
    raw: Vec<u8>,
}

impl TensorData {
    fn from_le<const N: usize, T: Copy>(
        name: impl Into<String>,
        dims: Vec<i64>,
        data_type: i32,
        data: &[T],
        to_le: impl Fn(T) -> [u8; N],
    ) -> Self {
        let mut raw = Vec::with_capacity(data.len() * N);
        for v in data {
            raw.extend_from_slice(&to_le(*v));
        }
        Self {
            name: name.into(),
            dims,
            data_type,
            raw,
        }
    }

    pub fn from_f32(name: impl Into<String>, dims: Vec<i64>, data: &[f32]) -> Self {
        Self::from_le(name, dims, FLOAT, data, f32::to_le_bytes)
    }

    pub fn from_i32(name: impl Into<String>, dims: Vec<i64>, data: &[i32]) -> Self {
        Self::from_le(name, dims, INT32, data, i32::to_le_bytes)
    }

    pub fn from_i8(name: impl Into<String>, dims: Vec<i64>, data: &[i8]) -> Self {
        Self::from_le(name, dims, INT8, data, i8::to_le_bytes)
    }

    pub fn from_u8(name: impl Into<String>, dims: Vec<i64>, data: &[u8]) -> Self {
        Self::from_le(name, dims, UINT8, data, u8::to_le_bytes)
    }

    /// Number of elements the dimensions describe.
    pub fn len(&self) -> usize {
        self.dims.iter().map(|&d| d.max(0) as usize).product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values, when this is an int32 tensor.
    pub fn i32_values(&self) -> Option<Vec<i32>> {
        (self.data_type == INT32).then(|| {
            self.raw
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        })
    }

    /// The values, when this is a float32 tensor.
    pub fn f32_values(&self) -> Option<Vec<f32>> {
        (self.data_type == FLOAT).then(|| {
            self.raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        })
    }
}

impl Message for TensorData {
    fn encode<S: Sink>(&self, s: &mut S) {
        for d in &self.dims {
            put_int(s, 1, *d);
        }
        put_int(s, 2, i64::from(self.data_type));
        put_str(s, 8, &self.name);
        put_bytes(s, 9, &self.raw);
    }
}

/// One dimension of a `TensorShapeProto`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    Value(i64),
    /// A named symbolic dimension, e.g. the batch size.
    Param(String),
}

impl Message for Dim {
    fn encode<S: Sink>(&self, s: &mut S) {
        match self {
            Dim::Value(v) => put_int(s, 1, *v),
            Dim::Param(p) => put_str(s, 2, p),
        }
    }
}

/// `ValueInfoProto` for a tensor graph input/output.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueInfo {
    pub name: String,
    pub elem_type: i32,
    /// `None` leaves the shape unknown (the runtime infers it), as for the
    /// intermediate tensors calibration exposes as extra outputs.
    pub dims: Option<Vec<Dim>>,
}

/// `TensorShapeProto`.
struct Shape<'a>(&'a [Dim]);
impl Message for Shape<'_> {
    fn encode<S: Sink>(&self, s: &mut S) {
        for d in self.0 {
            put_message(s, 1, d);
        }
    }
}

/// `TypeProto.Tensor`.
struct TensorType<'a>(&'a ValueInfo);
impl Message for TensorType<'_> {
    fn encode<S: Sink>(&self, s: &mut S) {
        put_int(s, 1, i64::from(self.0.elem_type));
        if let Some(dims) = &self.0.dims {
            put_message(s, 2, &Shape(dims));
        }
    }
}

/// `TypeProto` (only the `tensor_type` arm).
struct Type<'a>(&'a ValueInfo);
impl Message for Type<'_> {
    fn encode<S: Sink>(&self, s: &mut S) {
        put_message(s, 1, &TensorType(self.0));
    }
}

impl Message for ValueInfo {
    fn encode<S: Sink>(&self, s: &mut S) {
        put_str(s, 1, &self.name);
        put_message(s, 2, &Type(self));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A decoded field: (number, value). Test-only reader used to check the
    /// writer's output structurally.
    #[derive(Debug, Clone, PartialEq)]
    pub(crate) enum Value {
        Varint(u64),
        Fixed32(u32),
        Fixed64(u64),
        Bytes(Vec<u8>),
    }

    pub(crate) fn decode(mut b: &[u8]) -> Vec<(u32, Value)> {
        fn varint(b: &mut &[u8]) -> u64 {
            let mut v = 0u64;
            for shift in (0..64).step_by(7) {
                let (&byte, rest) = b.split_first().expect("truncated varint");
                *b = rest;
                v |= u64::from(byte & 0x7f) << shift;
                if byte & 0x80 == 0 {
                    return v;
                }
            }
            panic!("varint too long");
        }
        let mut out = Vec::new();
        while !b.is_empty() {
            let key = varint(&mut b);
            let field = (key >> 3) as u32;
            let value = match key & 7 {
                0 => Value::Varint(varint(&mut b)),
                1 => {
                    let (v, rest) = b.split_at(8);
                    b = rest;
                    Value::Fixed64(u64::from_le_bytes(v.try_into().unwrap()))
                }
                2 => {
                    let n = varint(&mut b) as usize;
                    let (v, rest) = b.split_at(n);
                    b = rest;
                    Value::Bytes(v.to_vec())
                }
                5 => {
                    let (v, rest) = b.split_at(4);
                    b = rest;
                    Value::Fixed32(u32::from_le_bytes(v.try_into().unwrap()))
                }
                w => panic!("wire type {w}"),
            };
            out.push((field, value));
        }
        out
    }

    #[test]
    fn varints() {
        let enc = |v: u64| {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            b
        };
        assert_eq!(enc(0), [0x00]);
        assert_eq!(enc(1), [0x01]);
        assert_eq!(enc(127), [0x7f]);
        assert_eq!(enc(128), [0x80, 0x01]);
        assert_eq!(enc(300), [0xac, 0x02]);
        assert_eq!(enc(u64::MAX).len(), 10);
    }

    #[test]
    fn scalar_fields() {
        // The protobuf documentation's examples: field 1 = 150, field 2 = "testing".
        let mut b = Vec::new();
        put_int(&mut b, 1, 150);
        assert_eq!(b, [0x08, 0x96, 0x01]);
        b.clear();
        put_str(&mut b, 2, "testing");
        assert_eq!(b, [0x12, 0x07, b't', b'e', b's', b't', b'i', b'n', b'g']);
        b.clear();
        put_int(&mut b, 3, -1);
        assert_eq!(b.len(), 1 + 10, "negative int64 is a 10-byte varint");
        assert_eq!(decode(&b), [(3, Value::Varint(u64::MAX))]);
        b.clear();
        put_int(&mut b, 20, 7); // field numbers >= 16 need a 2-byte key
        assert_eq!(b, [0xa0, 0x01, 0x07]);
    }

    #[test]
    fn nested_lengths_match_counter() {
        let vi = ValueInfo {
            name: "input".into(),
            elem_type: FLOAT,
            dims: Some(vec![Dim::Param("batch".into()), Dim::Value(3)]),
        };
        let bytes = vi.to_bytes();
        assert_eq!(bytes.len(), vi.encoded_len());
        let top = decode(&bytes);
        assert_eq!(top[0], (1, Value::Bytes(b"input".to_vec())));
        let Value::Bytes(ty) = &top[1].1 else {
            panic!()
        };
        let Value::Bytes(tt) = &decode(ty)[0].1 else {
            panic!()
        };
        let tt = decode(tt);
        assert_eq!(tt[0], (1, Value::Varint(1)));
        let Value::Bytes(shape) = &tt[1].1 else {
            panic!()
        };
        let dims = decode(shape);
        assert_eq!(dims.len(), 2);
        assert_eq!(
            dims[0],
            (1, Value::Bytes(vec![0x12, 5, b'b', b'a', b't', b'c', b'h']))
        );
        assert_eq!(dims[1], (1, Value::Bytes(vec![0x08, 3])));
    }

    #[test]
    fn attributes_and_tensors() {
        let a = Attribute::Ints("pads".into(), vec![0, 0, 1, 1]).to_bytes();
        assert_eq!(
            decode(&a),
            [
                (1, Value::Bytes(b"pads".to_vec())),
                (8, Value::Varint(0)),
                (8, Value::Varint(0)),
                (8, Value::Varint(1)),
                (8, Value::Varint(1)),
                (20, Value::Varint(7)),
            ]
        );
        let t = TensorData::from_f32("w", vec![2], &[1.0, -2.0]);
        let fields = decode(&t.to_bytes());
        assert_eq!(fields[0], (1, Value::Varint(2)));
        assert_eq!(fields[1], (2, Value::Varint(1)));
        assert_eq!(fields[2], (8, Value::Bytes(b"w".to_vec())));
        let mut raw = 1.0f32.to_le_bytes().to_vec();
        raw.extend_from_slice(&(-2.0f32).to_le_bytes());
        assert_eq!(fields[3], (9, Value::Bytes(raw)));
    }
}
