//! Tensor element types: the protocol's names (`FP32`, `BYTES`) and the
//! model configuration's (`TYPE_FP32`, `TYPE_STRING`).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One tensor element type of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Fp16,
    Fp32,
    Fp64,
    Bf16,
    /// Variable-length byte strings (Triton's `TYPE_STRING`).
    Bytes,
}

/// (type, protocol name, model-config name, element size in bytes; 0 = variable).
const TABLE: [(DataType, &str, &str, usize); 14] = [
    (DataType::Bool, "BOOL", "TYPE_BOOL", 1),
    (DataType::Uint8, "UINT8", "TYPE_UINT8", 1),
    (DataType::Uint16, "UINT16", "TYPE_UINT16", 2),
    (DataType::Uint32, "UINT32", "TYPE_UINT32", 4),
    (DataType::Uint64, "UINT64", "TYPE_UINT64", 8),
    (DataType::Int8, "INT8", "TYPE_INT8", 1),
    (DataType::Int16, "INT16", "TYPE_INT16", 2),
    (DataType::Int32, "INT32", "TYPE_INT32", 4),
    (DataType::Int64, "INT64", "TYPE_INT64", 8),
    (DataType::Fp16, "FP16", "TYPE_FP16", 2),
    (DataType::Fp32, "FP32", "TYPE_FP32", 4),
    (DataType::Fp64, "FP64", "TYPE_FP64", 8),
    (DataType::Bf16, "BF16", "TYPE_BF16", 2),
    (DataType::Bytes, "BYTES", "TYPE_STRING", 0),
];

impl DataType {
    fn row(self) -> &'static (DataType, &'static str, &'static str, usize) {
        TABLE
            .iter()
            .find(|r| r.0 == self)
            .expect("every type is in the table")
    }

    /// The protocol's name, e.g. `FP32`.
    pub fn as_str(self) -> &'static str {
        self.row().1
    }

    /// The model configuration's name, e.g. `TYPE_FP32` (`TYPE_STRING` for BYTES).
    pub fn config_name(self) -> &'static str {
        self.row().2
    }

    /// Bytes per element, `None` for BYTES (each element has its own length).
    pub fn element_size(self) -> Option<usize> {
        Some(self.row().3).filter(|&n| n > 0)
    }

    /// Parses a protocol name (`FP32`); case-sensitive as in Triton.
    pub fn parse(name: &str) -> Option<Self> {
        TABLE.iter().find(|r| r.1 == name).map(|r| r.0)
    }

    /// Parses a model-configuration name (`TYPE_FP32`).
    pub fn parse_config_name(name: &str) -> Option<Self> {
        TABLE.iter().find(|r| r.2 == name).map(|r| r.0)
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Serialized as the protocol's name (`"FP32"`), as in model metadata.
impl Serialize for DataType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DataType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Self::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown datatype {name:?}")))
    }
}

/// Serde adapter for the model configuration's `data_type` field
/// (`"TYPE_FP32"`): `#[serde(with = "config_name")]`.
pub(crate) mod config_name {
    use super::*;

    pub fn serialize<S: Serializer>(t: &DataType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(t.config_name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DataType, D::Error> {
        let name = String::deserialize(d)?;
        DataType::parse_config_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown data_type {name:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (t, name, config, _) in TABLE {
            assert_eq!(DataType::parse(name), Some(t));
            assert_eq!(DataType::parse_config_name(config), Some(t));
            assert_eq!(t.to_string(), name);
        }
        assert_eq!(DataType::Bytes.config_name(), "TYPE_STRING");
        assert_eq!(DataType::parse("fp32"), None);
        assert_eq!(DataType::parse("STRING"), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(DataType::Fp32.element_size(), Some(4));
        assert_eq!(DataType::Bool.element_size(), Some(1));
        assert_eq!(DataType::Bf16.element_size(), Some(2));
        assert_eq!(DataType::Bytes.element_size(), None);
    }

    #[test]
    fn serde_uses_protocol_names() {
        assert_eq!(serde_json::to_string(&DataType::Fp32).unwrap(), "\"FP32\"");
        let t: DataType = serde_json::from_str("\"BYTES\"").unwrap();
        assert_eq!(t, DataType::Bytes);
        assert!(serde_json::from_str::<DataType>("\"FLOAT\"").is_err());
    }
}
