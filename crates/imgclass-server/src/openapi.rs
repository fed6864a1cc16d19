//! `GET /openapi.json`: an OpenAPI 3.1 description of every route.
//!
//! Written out by hand: the routes are few and stable, and a test checks
//! that every documented path is routed and every route is documented.

use std::sync::OnceLock;

use serde_json::{Value, json};

/// Every route as (method, path); the router and this document must agree.
#[cfg(test)]
const ROUTES: &[(&str, &str)] = &[
    ("get", "/"),
    ("post", "/classify"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/api/stats"),
    ("get", "/api/history"),
    ("get", "/api/images/{id}"),
    ("get", "/v2"),
    ("get", "/v2/health/live"),
    ("get", "/v2/health/ready"),
    ("get", "/v2/models/{name}"),
    ("get", "/v2/models/{name}/ready"),
    ("post", "/v2/models/{name}/infer"),
    ("get", "/v2/models/{name}/config"),
    ("get", "/v2/models/{name}/stats"),
    ("get", "/v2/models/stats"),
    ("get", "/v2/models/{name}/versions/{version}"),
    ("get", "/v2/models/{name}/versions/{version}/ready"),
    ("get", "/v2/models/{name}/versions/{version}/config"),
    ("get", "/v2/models/{name}/versions/{version}/stats"),
    ("post", "/v2/models/{name}/versions/{version}/infer"),
    ("post", "/v2/repository/index"),
    ("post", "/v2/repository/models/{name}/load"),
    ("post", "/v2/repository/models/{name}/unload"),
];

/// The document as JSON text, built once.
pub fn document_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| serde_json::to_string_pretty(&document()).expect("the document serialises"))
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    })
}

fn errors(codes: &[(&str, &str)]) -> serde_json::Map<String, Value> {
    codes
        .iter()
        .map(|(code, text)| (code.to_string(), error_response(text)))
        .collect()
}

fn json_ok(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

fn op(
    summary: &str,
    tag: &str,
    secured: bool,
    mut responses: serde_json::Map<String, Value>,
    extra: Value,
) -> Value {
    if secured {
        responses.insert(
            "401".into(),
            error_response("API key missing or wrong (when one is configured)"),
        );
    }
    let mut o = json!({ "summary": summary, "tags": [tag], "responses": responses });
    if secured {
        o["security"] = json!([{ "bearer": [] }]);
    }
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            o[k] = v;
        }
    }
    o
}

fn with(
    mut map: serde_json::Map<String, Value>,
    code: &str,
    v: Value,
) -> serde_json::Map<String, Value> {
    map.insert(code.into(), v);
    map
}

fn version_param() -> Value {
    json!({ "name": "version", "in": "path", "required": true, "schema": { "type": "string", "enum": ["1"] }, "description": "Model version (every model has one, \"1\"); another: 404" })
}

fn name_param() -> Value {
    json!({ "name": "name", "in": "path", "required": true, "schema": { "type": "string" }, "description": "Model name" })
}

/// The document.
pub fn document() -> Value {
    let timing_headers = json!({
        "X-Request-Id": { "schema": { "type": "string" }, "description": "Request id (the client's, if sane)" },
        "X-Image-Id": { "schema": { "type": "string" }, "description": "sha256 of the uploaded bytes" },
        "X-Model": { "schema": { "type": "string" }, "description": "The model that answered" },
        "X-Queue-Time": { "schema": { "type": "string" }, "description": "ms waiting for an engine worker" },
        "X-Inference-Time": { "schema": { "type": "string" }, "description": "ms of the engine call" },
        "X-Total-Time": { "schema": { "type": "string" }, "description": "ms from arrival to response" },
    });
    let classify_errors = errors(&[
        (
            "400",
            "No `image` field (`{\"error\": \"No image file provided\"}`), malformed multipart, bad query",
        ),
        ("404", "Unknown model"),
        ("413", "Body over the limit (default 10 MiB)"),
        ("415", "Not an image format the server decodes"),
        ("422", "Corrupt or truncated image, or over the pixel limit"),
        ("503", "Queue full or model not ready; see Retry-After"),
        ("504", "Request timeout passed"),
    ]);
    let infer_errors = errors(&[
        ("400", "Malformed request, shape or data"),
        ("404", "Unknown model"),
        ("413", "Body over the limit (default 64 MiB)"),
        ("415", "An image is not in a format the server decodes"),
        ("422", "An image is corrupt or over the pixel limit"),
        ("503", "Queue full or model not ready; see Retry-After"),
        ("504", "Request timeout passed"),
    ]);
    let unavailable = errors(&[("503", "Not ready (loading or shutting down)")]);
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "imgclass",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Image classification: seed-compatible /classify, KServe v2 / Open Inference Protocol, stored history."
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": {
                    "type": "object", "required": ["error"],
                    "properties": { "error": { "type": "string" } }
                },
                "Prediction": {
                    "type": "object", "required": ["label", "probability", "index"],
                    "properties": {
                        "label": { "type": "string" },
                        "probability": { "type": "number" },
                        "index": { "type": "integer" }
                    }
                },
                "StoredRecord": {
                    "type": "object",
                    "properties": {
                        "id": { "type": "string" }, "format": { "type": "string" },
                        "bytes": { "type": "integer" }, "width": { "type": "integer" }, "height": { "type": "integer" },
                        "model": { "type": "string" }, "engine": { "type": "string" },
                        "predictions": { "type": "array", "items": { "$ref": "#/components/schemas/Prediction" } },
                        "created": { "type": "string", "format": "date-time" },
                        "filename": { "type": "string" }
                    }
                },
                "InferTensor": {
                    "type": "object", "required": ["name", "shape", "datatype"],
                    "properties": {
                        "name": { "type": "string" },
                        "shape": { "type": "array", "items": { "type": "integer" } },
                        "datatype": { "type": "string", "enum": ["BYTES", "FP32"] },
                        "data": { "type": "array", "description": "JSON data; absent when parameters.binary_data_size gives binary data after the JSON" },
                        "parameters": { "type": "object", "properties": { "binary_data_size": { "type": "integer", "minimum": 0 } } }
                    }
                }
            }
        },
        "paths": {},
    });
    let mut paths = serde_json::Map::new();
    paths.insert("/".into(), json!({ "get": op("Upload page", "web", false, serde_json::Map::new(), json!({}))
                .tap_response("200", json!({ "description": "HTML page", "content": { "text/html": {} } })) }));
    paths.insert("/classify".into(), json!({ "post": op(
                "Classify one image (seed-compatible)", "classify", true,
                with(classify_errors, "200", json!({
                    "description": "Most probable classes, most probable first",
                    "headers": timing_headers,
                    "content": { "application/json": { "schema": {
                        "type": "array", "items": { "$ref": "#/components/schemas/Prediction" } } } }
                })),
                json!({
                    "parameters": [
                        { "name": "top_k", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 20, "default": 3 } },
                        { "name": "model", "in": "query", "schema": { "type": "string" }, "description": "Which served model answers (default: the first of `--model`); unknown: 404" }
                    ],
                    "requestBody": { "required": true, "content": {
                        "multipart/form-data": { "schema": { "type": "object", "required": ["image"],
                            "properties": { "image": { "type": "string", "format": "binary" } } } },
                        "image/*": { "schema": { "type": "string", "format": "binary" } }
                    } }
                })
            ) }));
    paths.insert("/healthz".into(), json!({ "get": op("Liveness", "health", false,
                with(serde_json::Map::new(), "200", json_ok("Alive", json!({ "type": "object" }))), json!({})) }));
    paths.insert("/readyz".into(), json!({ "get": op("Readiness: model loaded and warmed up", "health", false,
                with(unavailable.clone(), "200", json_ok("Ready", json!({ "type": "object" }))), json!({})) }));
    paths.insert("/metrics".into(), json!({ "get": op("Prometheus metrics", "observability", false,
                with(serde_json::Map::new(), "200", json!({ "description": "Prometheus text format", "content": { "text/plain": {} } })), json!({})) }));
    paths.insert("/openapi.json".into(), json!({ "get": op("This document", "meta", false,
                with(serde_json::Map::new(), "200", json_ok("OpenAPI 3.1", json!({ "type": "object" }))), json!({})) }));
    paths.insert("/api/stats".into(), json!({ "get": op("Live figures for the web page", "observability", false,
                with(serde_json::Map::new(), "200", json_ok("Requests/s over the last minute, latency percentiles, queue depth, mean batch size, engine, model, uptime", json!({ "type": "object" }))), json!({})) }));
    paths.insert("/api/history".into(), json!({ "get": op("Stored results, newest first, across replicas sharing the images folder", "history", true,
                with(errors(&[("400", "Bad limit or before"), ("404", "Storage is off")]), "200", json_ok("A page of results", json!({
                    "type": "object",
                    "properties": {
                        "items": { "type": "array", "items": { "$ref": "#/components/schemas/StoredRecord" } },
                        "next_before": { "type": ["string", "null"] }
                    }
                }))),
                json!({ "parameters": [
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 200, "default": 20 } },
                    { "name": "before", "in": "query", "schema": { "type": "string" }, "description": "RFC 3339 time or Unix ms; exclusive" }
                ] })) }));
    paths.insert("/api/images/{id}".into(), json!({ "get": op("A stored upload", "history", true,
                with(errors(&[("400", "Not a sha256 id"), ("404", "No such image or storage off")]), "200", json!({ "description": "The image bytes", "content": { "image/*": {} } })),
                json!({ "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string", "pattern": "^[0-9a-f]{64}$" } }] })) }));
    paths.insert("/v2".into(), json!({ "get": op("KServe v2 server metadata", "kserve", false,
                with(serde_json::Map::new(), "200", json_ok("Name, version, extensions", json!({ "type": "object" }))), json!({})) }));
    paths.insert("/v2/health/live".into(), json!({ "get": op("KServe v2 liveness", "kserve", false,
                with(serde_json::Map::new(), "200", json_ok("Live", json!({ "type": "object" }))), json!({})) }));
    paths.insert("/v2/health/ready".into(), json!({ "get": op("KServe v2 readiness", "kserve", false,
                with(unavailable.clone(), "200", json_ok("Ready", json!({ "type": "object" }))), json!({})) }));
    paths.insert("/v2/models/{name}".into(), json!({ "get": op("KServe v2 model metadata", "kserve", false,
                with(errors(&[("404", "Unknown model"), ("503", "Not loaded yet")]), "200", json_ok("Inputs and outputs", json!({ "type": "object" }))),
                json!({ "parameters": [name_param()] })) }));
    paths.insert("/v2/models/{name}/ready".into(), json!({ "get": op("KServe v2 model readiness", "kserve", false,
                with(with(unavailable, "404", error_response("Unknown model")), "200", json_ok("Ready", json!({ "type": "object" }))),
                json!({ "parameters": [name_param()] })) }));
    paths.insert("/v2/models/{name}/infer".into(), json!({ "post": op(
                "KServe v2 inference: BYTES (encoded images: binary tensor data, base64 JSON or a raw body with Inference-Header-Content-Length: 0) or FP32 (preprocessed, binary or JSON) input; binary or JSON outputs; classification extension", "kserve", true,
                with(infer_errors, "200", json_ok("Outputs: probabilities FP32 [N, classes] or BYTES \"<prob>:<index>:<label>\" [N, k]", json!({ "type": "object" }))),
                json!({
                    "parameters": [name_param(), { "name": "Inference-Header-Content-Length", "in": "header", "required": false,
                        "schema": { "type": "integer", "minimum": 0 },
                        "description": "Length of the JSON part when binary tensor data follows it; 0: the whole body is one encoded image" }],
                    "requestBody": { "required": true, "content": { "application/octet-stream": { "schema": { "type": "string", "format": "binary" } }, "application/json": { "schema": {
                        "type": "object", "required": ["inputs"],
                        "properties": {
                            "id": { "type": "string" },
                            "inputs": { "type": "array", "minItems": 1, "maxItems": 1, "items": { "$ref": "#/components/schemas/InferTensor" } },
                            "outputs": { "type": "array", "items": { "type": "object", "properties": {
                                "name": { "type": "string", "enum": ["probabilities"] },
                                "parameters": { "type": "object", "properties": { "classification": { "type": "integer", "minimum": 1 }, "binary_data": { "type": "boolean" } } }
                            } } }
                        }
                    } } } }
                })
            ) }));
    // The same operations under /versions/{version}.
    for route in ["", "/ready", "/infer"] {
        let plain = format!("/v2/models/{{name}}{route}");
        let versioned = format!("/v2/models/{{name}}/versions/{{version}}{route}");
        let mut item = paths[&plain].clone();
        for op in item.as_object_mut().expect("a path item").values_mut() {
            op["parameters"] = json!([name_param(), version_param()]);
        }
        paths.insert(versioned, item);
    }
    let not_found = errors(&[
        ("404", "Unknown model or version"),
        ("503", "Not loaded yet"),
    ]);
    let model_config = json!({ "get": op("Triton model configuration: platform, backend, max_batch_size, inputs/outputs with data_type and dims, dynamic_batching, instance_group", "kserve", false,
                with(not_found.clone(), "200", json_ok("Triton model config JSON", json!({ "type": "object" }))),
                json!({ "parameters": [name_param()] })) });
    let model_stats = json!({ "get": op("Triton statistics of one model: inference/execution counts, success/fail/queue/compute_input/compute_infer/compute_output count + ns", "kserve", false,
                with(not_found, "200", json_ok("{\"model_stats\": [...]}", json!({ "type": "object" }))),
                json!({ "parameters": [name_param()] })) });
    for (route, item) in [("/config", model_config), ("/stats", model_stats)] {
        paths.insert(format!("/v2/models/{{name}}{route}"), item.clone());
        let mut versioned = item;
        versioned["get"]["parameters"] = json!([name_param(), version_param()]);
        paths.insert(
            format!("/v2/models/{{name}}/versions/{{version}}{route}"),
            versioned,
        );
    }
    paths.insert("/v2/models/stats".into(), json!({ "get": op("Triton statistics of every served model", "kserve", false,
                with(serde_json::Map::new(), "200", json_ok("{\"model_stats\": [...]}", json!({ "type": "object" }))), json!({})) }));
    paths.insert("/v2/repository/index".into(), json!({ "post": op("Every model in the model home and every model asked for, with state READY / LOADING / UNAVAILABLE and a reason", "repository", false,
                with(errors(&[("400", "Malformed body")]), "200", json_ok("[{name, version, state, reason}]", json!({ "type": "array" }))),
                json!({ "requestBody": { "required": false, "content": { "application/json": { "schema": {
                    "type": "object", "properties": { "ready": { "type": "boolean" } } } } } } })) }));
    let control_errors = errors(&[
        (
            "400",
            "Malformed body, unsupported parameters, or the load failed (what was serving is untouched)",
        ),
        ("404", "Unknown model"),
        ("409", "The model is already being loaded"),
    ]);
    paths.insert("/v2/repository/models/{name}/load".into(), json!({ "post": op("Load (or reload) a model from the model home; answers once it is served", "repository", true,
                with(control_errors.clone(), "200", json_ok("The model's index entry", json!({ "type": "object" }))),
                json!({ "parameters": [name_param()] })) }));
    paths.insert("/v2/repository/models/{name}/unload".into(), json!({ "post": op("Stop serving a model after its queue drains", "repository", true,
                with(control_errors, "200", json_ok("The model's index entry", json!({ "type": "object" }))),
                json!({ "parameters": [name_param()] })) }));
    doc["paths"] = Value::Object(paths);
    doc
}

/// Small helper to add a response to an operation built by [`op`].
trait TapResponse {
    fn tap_response(self, code: &str, response: Value) -> Value;
}

impl TapResponse for Value {
    fn tap_response(mut self, code: &str, response: Value) -> Value {
        self["responses"][code] = response;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_and_nothing_else() {
        let doc = document();
        let paths = doc["paths"].as_object().unwrap();
        for (method, path) in ROUTES {
            assert!(
                paths.get(*path).and_then(|p| p.get(*method)).is_some(),
                "{method} {path} undocumented"
            );
        }
        let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(documented, ROUTES.len());
        assert!(document_text().starts_with('{'));
    }
}
