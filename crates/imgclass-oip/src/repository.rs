//! The model repository extension: `POST /v2/repository/index`,
//! `POST /v2/repository/models/{name}/load` and `…/unload`.
//!
//! tritonclient posts an empty body to index, `{}` to load (or
//! `{"parameters": {"config": …, "file:…": …}}`), and
//! `{"parameters": {"unload_dependents": false}}` to unload.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::OipError;

/// A model's state, as Triton names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ModelState {
    Unknown,
    Ready,
    Unavailable,
    Loading,
    Unloading,
}

/// One entry of the index response (a JSON array of these).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryModel {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub state: ModelState,
    /// Why the model is in this state (a failed load's error); Triton omits an empty one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// `POST /v2/repository/index` body (may be empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub struct IndexRequest {
    /// Only models ready for inference.
    #[serde(default)]
    pub ready: bool,
}

/// The body of a load or unload request (may be empty).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct ControlRequest {
    #[serde(default)]
    pub parameters: Map<String, Value>,
}

fn parse_or_default<T: Default + serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, OipError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| OipError::Json(e.to_string()))
}

impl IndexRequest {
    /// Parses an index body; empty means the defaults.
    pub fn parse(body: &[u8]) -> Result<Self, OipError> {
        parse_or_default(body)
    }
}

impl ControlRequest {
    /// Parses a load or unload body; empty means no parameters.
    pub fn parse(body: &[u8]) -> Result<Self, OipError> {
        parse_or_default(body)
    }

    /// Load parameters that override the model (`config`, `file:…`), which
    /// a server loading only from its own model home cannot honour.
    pub fn overrides(&self) -> Vec<&str> {
        self.parameters
            .keys()
            .filter(|k| *k == "config" || k.starts_with("file:"))
            .map(String::as_str)
            .collect()
    }

    /// The unload request's `unload_dependents` (false when absent).
    pub fn unload_dependents(&self) -> Result<bool, OipError> {
        match self.parameters.get("unload_dependents") {
            None => Ok(false),
            Some(v) => v.as_bool().ok_or(OipError::Parameter {
                what: "parameter \"unload_dependents\"".into(),
                expected: "true or false",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn index_entries() {
        let v = serde_json::to_value(vec![
            RepositoryModel {
                name: "a".into(),
                version: Some("1".into()),
                state: ModelState::Ready,
                reason: String::new(),
            },
            RepositoryModel {
                name: "b".into(),
                version: None,
                state: ModelState::Unavailable,
                reason: "unloaded".into(),
            },
        ])
        .unwrap();
        assert_eq!(
            v,
            json!([{"name": "a", "version": "1", "state": "READY"},
                   {"name": "b", "state": "UNAVAILABLE", "reason": "unloaded"}])
        );
    }

    #[test]
    fn bodies_as_tritonclient_sends_them() {
        assert_eq!(
            IndexRequest::parse(b"").unwrap(),
            IndexRequest { ready: false }
        );
        assert!(IndexRequest::parse(b"{\"ready\": true}").unwrap().ready);
        assert!(IndexRequest::parse(b"{\"ready\": 3}").is_err());
        let load = ControlRequest::parse(b"{}").unwrap();
        assert!(load.overrides().is_empty());
        let load = ControlRequest::parse(
            br#"{"parameters": {"config": "{}", "file:1/model.onnx": "AA=="}}"#,
        )
        .unwrap();
        assert_eq!(load.overrides(), vec!["config", "file:1/model.onnx"]);
        let unload =
            ControlRequest::parse(br#"{"parameters": {"unload_dependents": false}}"#).unwrap();
        assert!(!unload.unload_dependents().unwrap());
        let bad =
            ControlRequest::parse(br#"{"parameters": {"unload_dependents": "yes"}}"#).unwrap();
        assert!(bad.unload_dependents().is_err());
        assert!(ControlRequest::parse(b"[1]").is_err());
        assert!(
            ControlRequest::parse(b"  \n")
                .unwrap()
                .parameters
                .is_empty()
        );
    }
}
