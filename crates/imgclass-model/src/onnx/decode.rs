//! Reads an ONNX `ModelProto` back into the types of [`super`].
//!
//! It understands exactly the fields the encoder writes (plus the harmless
//! ones other writers add: doc strings, `value_info` shape hints, metadata,
//! packed repeated scalars and `float_data`). Any other field, which could
//! change what the model computes (a node domain, an attribute kind,
//! external tensor data), is an error naming it, never silently dropped.

use super::{Attribute, Dim, FLOAT, Graph, Model, Node, TensorData, ValueInfo};

/// Why bytes could not be read as an ONNX model.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not valid protobuf (truncated, bad varint, bad wire type).
    #[error("not a valid ONNX file: {0}")]
    Malformed(String),
    /// Valid ONNX that uses a feature this reader does not handle.
    #[error(
        "unsupported ONNX content: {0} (imgclass reads the ONNX files it writes itself: Conv/Gemm classifiers with inline float32 weights)"
    )]
    Unsupported(String),
}

fn malformed(what: &str) -> DecodeError {
    DecodeError::Malformed(what.to_string())
}

/// One field's value on the wire.
enum Wire<'a> {
    Varint(u64),
    Fixed32(u32),
    Fixed64,
    Bytes(&'a [u8]),
}

/// Iterates over the fields of one message.
struct Fields<'a> {
    rest: &'a [u8],
}

fn varint(b: &mut &[u8]) -> Result<u64, DecodeError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = b
            .split_first()
            .ok_or_else(|| malformed("truncated varint"))?;
        *b = rest;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(malformed("varint longer than 10 bytes"))
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecodeError> {
    if b.len() < n {
        return Err(malformed("field runs past the end of its message"));
    }
    let (head, tail) = b.split_at(n);
    *b = tail;
    Ok(head)
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Wire<'a>), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        Some((|| {
            let key = varint(&mut self.rest)?;
            let field = u32::try_from(key >> 3).map_err(|_| malformed("field number too large"))?;
            let value = match key & 7 {
                0 => Wire::Varint(varint(&mut self.rest)?),
                1 => {
                    take(&mut self.rest, 8)?;
                    Wire::Fixed64
                }
                2 => {
                    let n = usize::try_from(varint(&mut self.rest)?)
                        .map_err(|_| malformed("length too large"))?;
                    Wire::Bytes(take(&mut self.rest, n)?)
                }
                5 => {
                    let b = take(&mut self.rest, 4)?;
                    Wire::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                }
                w => return Err(DecodeError::Malformed(format!("wire type {w}"))),
            };
            Ok((field, value))
        })())
    }
}

fn fields(bytes: &[u8]) -> Fields<'_> {
    Fields { rest: bytes }
}

fn bytes<'a>(w: Wire<'a>, what: &str) -> Result<&'a [u8], DecodeError> {
    match w {
        Wire::Bytes(b) => Ok(b),
        _ => Err(DecodeError::Malformed(format!(
            "{what} is not length-delimited"
        ))),
    }
}

fn string(w: Wire<'_>, what: &str) -> Result<String, DecodeError> {
    String::from_utf8(bytes(w, what)?.to_vec())
        .map_err(|_| DecodeError::Malformed(format!("{what} is not UTF-8")))
}

fn int(w: Wire<'_>, what: &str) -> Result<i64, DecodeError> {
    match w {
        Wire::Varint(v) => Ok(v as i64),
        _ => Err(DecodeError::Malformed(format!("{what} is not a varint"))),
    }
}

/// A repeated int64 field, written unpacked (one varint) or packed.
fn ints(w: Wire<'_>, out: &mut Vec<i64>, what: &str) -> Result<(), DecodeError> {
    match w {
        Wire::Varint(v) => out.push(v as i64),
        Wire::Bytes(mut b) => {
            while !b.is_empty() {
                out.push(varint(&mut b)? as i64);
            }
        }
        _ => {
            return Err(DecodeError::Malformed(format!(
                "{what} has a bad wire type"
            )));
        }
    }
    Ok(())
}

fn unsupported(message: &str, field: u32) -> DecodeError {
    DecodeError::Unsupported(format!("{message} field {field}"))
}

/// Parses a serialized `ModelProto`.
pub fn decode_model(b: &[u8]) -> Result<Model, DecodeError> {
    let mut m = Model {
        ir_version: 0,
        producer_name: String::new(),
        producer_version: String::new(),
        doc_string: String::new(),
        graph: Graph::default(),
        opset_imports: Vec::new(),
    };
    let mut has_graph = false;
    for f in fields(b) {
        match f? {
            (1, w) => m.ir_version = int(w, "ir_version")?,
            (2, w) => m.producer_name = string(w, "producer_name")?,
            (3, w) => m.producer_version = string(w, "producer_version")?,
            (6, w) => m.doc_string = string(w, "doc_string")?,
            (7, w) => {
                m.graph = graph(bytes(w, "graph")?)?;
                has_graph = true;
            }
            (8, w) => m.opset_imports.push(opset(bytes(w, "opset_import")?)?),
            // domain, model_version, metadata_props: descriptive only.
            (4 | 5 | 14, _) => {}
            (n, _) => return Err(unsupported("ModelProto", n)),
        }
    }
    if !has_graph {
        return Err(malformed("the model has no graph"));
    }
    Ok(m)
}

fn opset(b: &[u8]) -> Result<(String, i64), DecodeError> {
    let (mut domain, mut version) = (String::new(), 0);
    for f in fields(b) {
        match f? {
            (1, w) => domain = string(w, "opset domain")?,
            (2, w) => version = int(w, "opset version")?,
            (n, _) => return Err(unsupported("OperatorSetIdProto", n)),
        }
    }
    Ok((domain, version))
}

fn graph(b: &[u8]) -> Result<Graph, DecodeError> {
    let mut g = Graph::default();
    for f in fields(b) {
        match f? {
            (1, w) => g.nodes.push(node(bytes(w, "node")?)?),
            (2, w) => g.name = string(w, "graph name")?,
            (5, w) => g.initializers.push(tensor(bytes(w, "initializer")?)?),
            (10, w) => g.doc_string = string(w, "graph doc_string")?,
            (11, w) => g.inputs.push(value_info(bytes(w, "input")?)?),
            (12, w) => g.outputs.push(value_info(bytes(w, "output")?)?),
            // value_info: inferred shapes of intermediate values, a hint only.
            (13, _) => {}
            (n, _) => return Err(unsupported("GraphProto", n)),
        }
    }
    Ok(g)
}

fn node(b: &[u8]) -> Result<Node, DecodeError> {
    let mut n = Node {
        name: String::new(),
        op_type: String::new(),
        inputs: Vec::new(),
        outputs: Vec::new(),
        attributes: Vec::new(),
    };
    for f in fields(b) {
        match f? {
            (1, w) => n.inputs.push(string(w, "node input")?),
            (2, w) => n.outputs.push(string(w, "node output")?),
            (3, w) => n.name = string(w, "node name")?,
            (4, w) => n.op_type = string(w, "op_type")?,
            (5, w) => n.attributes.push(attribute(bytes(w, "attribute")?)?),
            (6, _) => {}
            (7, w) => {
                let domain = string(w, "node domain")?;
                if !domain.is_empty() && domain != "ai.onnx" {
                    return Err(DecodeError::Unsupported(format!(
                        "node {:?} is in domain {domain:?}",
                        n.name
                    )));
                }
            }
            (f, _) => return Err(unsupported("NodeProto", f)),
        }
    }
    Ok(n)
}

fn attribute(b: &[u8]) -> Result<Attribute, DecodeError> {
    const INT: i64 = 2;
    const INTS: i64 = 7;
    let (mut name, mut i, mut list, mut kind) = (String::new(), 0, Vec::new(), 0);
    for f in fields(b) {
        match f? {
            (1, w) => name = string(w, "attribute name")?,
            (3, w) => i = int(w, "attribute i")?,
            (8, w) => ints(w, &mut list, "attribute ints")?,
            (20, w) => kind = int(w, "attribute type")?,
            (13, _) => {}
            (n, _) => {
                return Err(DecodeError::Unsupported(format!(
                    "attribute {name:?} uses AttributeProto field {n}"
                )));
            }
        }
    }
    match kind {
        INT => Ok(Attribute::Int(name, i)),
        INTS => Ok(Attribute::Ints(name, list)),
        k => Err(DecodeError::Unsupported(format!(
            "attribute {name:?} has type {k}"
        ))),
    }
}

fn tensor(b: &[u8]) -> Result<TensorData, DecodeError> {
    let (mut dims, mut data_type, mut name) = (Vec::new(), 0, String::new());
    let mut raw: Option<Vec<u8>> = None;
    let mut floats: Vec<u8> = Vec::new();
    for f in fields(b) {
        match f? {
            (1, w) => ints(w, &mut dims, "tensor dims")?,
            (2, w) => data_type = int(w, "tensor data_type")? as i32,
            (4, Wire::Bytes(packed)) => floats.extend_from_slice(packed),
            (4, Wire::Fixed32(v)) => floats.extend_from_slice(&v.to_le_bytes()),
            (8, w) => name = string(w, "tensor name")?,
            (9, w) => raw = Some(bytes(w, "raw_data")?.to_vec()),
            (12, _) => {}
            (13 | 14, _) => {
                return Err(DecodeError::Unsupported(format!(
                    "tensor {name:?} keeps its data in an external file"
                )));
            }
            (n, _) => {
                return Err(DecodeError::Unsupported(format!(
                    "tensor {name:?} uses TensorProto field {n}"
                )));
            }
        }
    }
    let raw = match raw {
        Some(r) => r,
        None if data_type == FLOAT => floats,
        None => {
            return Err(DecodeError::Unsupported(format!(
                "tensor {name:?} of type {data_type} has no raw_data"
            )));
        }
    };
    let t = TensorData {
        name,
        dims,
        data_type,
        raw,
    };
    let size = match data_type {
        super::FLOAT | super::INT32 => 4,
        super::INT8 | super::UINT8 => 1,
        other => {
            return Err(DecodeError::Unsupported(format!(
                "tensor {:?} has data type {other}",
                t.name
            )));
        }
    };
    if t.dims.iter().any(|&d| d < 0) || t.raw.len() != t.len() * size {
        return Err(DecodeError::Malformed(format!(
            "tensor {:?} has {} bytes for dimensions {:?}",
            t.name,
            t.raw.len(),
            t.dims
        )));
    }
    Ok(t)
}

fn value_info(b: &[u8]) -> Result<ValueInfo, DecodeError> {
    let mut v = ValueInfo {
        name: String::new(),
        elem_type: 0,
        dims: None,
    };
    for f in fields(b) {
        match f? {
            (1, w) => v.name = string(w, "value name")?,
            (2, w) => {
                for f in fields(bytes(w, "type")?) {
                    match f? {
                        (1, w) => {
                            for f in fields(bytes(w, "tensor_type")?) {
                                match f? {
                                    (1, w) => v.elem_type = int(w, "elem_type")? as i32,
                                    (2, w) => v.dims = Some(shape(bytes(w, "shape")?)?),
                                    (n, _) => return Err(unsupported("TypeProto.Tensor", n)),
                                }
                            }
                        }
                        (6, _) => {}
                        (n, _) => {
                            return Err(DecodeError::Unsupported(format!(
                                "value {:?} is not a tensor (TypeProto field {n})",
                                v.name
                            )));
                        }
                    }
                }
            }
            (3, _) => {}
            (n, _) => return Err(unsupported("ValueInfoProto", n)),
        }
    }
    Ok(v)
}

fn shape(b: &[u8]) -> Result<Vec<Dim>, DecodeError> {
    let mut dims = Vec::new();
    for f in fields(b) {
        match f? {
            (1, w) => {
                let mut dim = Dim::Param(String::new());
                for f in fields(bytes(w, "dim")?) {
                    match f? {
                        (1, w) => dim = Dim::Value(int(w, "dim_value")?),
                        (2, w) => dim = Dim::Param(string(w, "dim_param")?),
                        (3, _) => {}
                        (n, _) => return Err(unsupported("TensorShapeProto.Dimension", n)),
                    }
                }
                dims.push(dim);
            }
            (n, _) => return Err(unsupported("TensorShapeProto", n)),
        }
    }
    Ok(dims)
}

#[cfg(test)]
mod tests {
    use super::super::{INT8, INT32, Message, UINT8};
    use super::*;

    fn sample() -> Model {
        Model {
            ir_version: 8,
            producer_name: "imgclass".into(),
            producer_version: "0.1.0".into(),
            doc_string: String::new(),
            graph: Graph {
                name: "g".into(),
                nodes: vec![Node {
                    name: "c".into(),
                    op_type: "Conv".into(),
                    inputs: vec!["x".into(), "w".into()],
                    outputs: vec!["y".into()],
                    attributes: vec![
                        Attribute::Ints("pads".into(), vec![0, 1, -1, 1]),
                        Attribute::Int("group".into(), 3),
                    ],
                }],
                initializers: vec![
                    TensorData::from_f32("w", vec![1, 2], &[1.5, -2.0]),
                    TensorData::from_i8("q", vec![3], &[-127, 0, 127]),
                    TensorData::from_u8("z", vec![], &[128]),
                    TensorData::from_i32("b", vec![2], &[-70000, 5]),
                ],
                doc_string: "doc".into(),
                inputs: vec![ValueInfo {
                    name: "x".into(),
                    elem_type: FLOAT,
                    dims: Some(vec![Dim::Param("batch".into()), Dim::Value(3)]),
                }],
                outputs: vec![ValueInfo {
                    name: "y".into(),
                    elem_type: FLOAT,
                    dims: None,
                }],
            },
            opset_imports: vec![(String::new(), 13)],
        }
    }

    #[test]
    fn round_trips_what_the_encoder_writes() {
        let m = sample();
        let bytes = m.to_bytes();
        let back = decode_model(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.to_bytes(), bytes, "re-encoding is byte-identical");
        let types: Vec<i32> = back
            .graph
            .initializers
            .iter()
            .map(|t| t.data_type)
            .collect();
        assert_eq!(types, [FLOAT, INT8, UINT8, INT32]);
    }

    #[test]
    fn rejects_garbage_truncation_and_unknown_fields() {
        let bytes = sample().to_bytes();
        assert!(matches!(
            decode_model(&bytes[..bytes.len() - 3]),
            Err(DecodeError::Malformed(_))
        ));
        assert!(decode_model(b"\xff\xff\xff").is_err());
        assert!(decode_model(b"").is_err(), "no graph");
        // A node in another domain (field 7) must not be silently dropped.
        let mut m = sample();
        m.graph.nodes[0].op_type = "X".into();
        let mut node = m.graph.nodes[0].to_bytes();
        super::super::put_str(&mut node, 7, "com.microsoft");
        let mut graph = Vec::new();
        super::super::put_bytes(&mut graph, 1, &node);
        let mut model = Vec::new();
        super::super::put_bytes(&mut model, 7, &graph);
        let err = decode_model(&model).unwrap_err();
        assert!(err.to_string().contains("com.microsoft"), "{err}");
    }
}
