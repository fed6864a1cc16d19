//! Against the real client: request bodies made by tritonclient 2.73.0
//! (`generate_request_body`, the code `infer` sends with) parse to the
//! tensors it was given, and responses encoded here decode in tritonclient
//! (`parse_response_body`, the code `infer` reads with) to the values put
//! in. The client comes from the pinned venv of
//! crates/imgclass-server/tests/triton (created once under the test cache).

use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use bytes::Bytes;
use imgclass_oip::*;
use serde_json::{Value, json};

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

/// This package's directory: cargo's run-time value, as a test binary in
/// a shared target dir may have been built by another clone (see the
/// testkit's `repo_root`).
fn package_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

fn venv_python() -> PathBuf {
    let script = package_dir().join("../imgclass-server/tests/triton/setup-venv.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "{} failed", script.display());
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn run_python(python: &Path, mode: &str, input: &str) -> Vec<Value> {
    let script = package_dir().join("tests/tritonclient_bodies.py");
    let mut child = Command::new(python)
        .arg(&script)
        .arg(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "tritonclient_bodies.py {mode} failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The tensor's values in the script's form (BYTES as base64).
fn values(t: &Tensor) -> Value {
    if let Some(e) = t.elements() {
        return Value::from(e.iter().map(|x| b64(x)).collect::<Vec<_>>());
    }
    let b = t.le_bytes().unwrap();
    match t.datatype() {
        DataType::Fp32 => json!(t.to_f32().unwrap()),
        DataType::Uint8 => json!(b.to_vec()),
        DataType::Bool => json!(b.iter().map(|&x| x != 0).collect::<Vec<_>>()),
        DataType::Int64 => json!(
            b.chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect::<Vec<_>>()
        ),
        // FP16 has no Rust type here; two halves of 1.5 and -2.0
        DataType::Fp16 => {
            assert_eq!(&b[..], &[0x00, 0x3e, 0x00, 0xc0]);
            json!([1.5, -2.0])
        }
        other => panic!("unexpected {other}"),
    }
}

/// FP32 values as the script prints them (f32 widened to f64), back to f32.
fn same_values(got: &Value, want: &Value, dt: &str) -> bool {
    if dt == "FP32" {
        let f = |v: &Value| -> Vec<f32> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        };
        return f(got) == f(want);
    }
    got == want
}

#[test]
fn real_client_bodies_round_trip() {
    let python = venv_python();
    let cases = run_python(&python, "requests", "");
    assert_eq!(cases.len(), 5);
    let mut responses = String::new();
    for case in &cases {
        let name = case["case"].as_str().unwrap();
        let body = Bytes::from(unb64(case["body"].as_str().unwrap()));
        let header = case["header"].as_u64().map(|n| n.to_string());
        let parsed = parse_infer_request(
            body.clone(),
            header.as_deref().map(str::as_bytes),
            &ParseOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let InferBody::Request(req) = parsed else {
            panic!("{name}: raw")
        };
        assert_eq!(req.id.as_deref(), case["id"].as_str(), "{name}");
        assert_eq!(
            req.binary_data_output,
            case["binary_data_output"] == true,
            "{name}"
        );
        let want = case["inputs"].as_array().unwrap();
        assert_eq!(req.inputs.len(), want.len(), "{name}");
        for (got, want) in req.inputs.iter().zip(want) {
            let dt = want["datatype"].as_str().unwrap();
            assert_eq!(got.name, want["name"], "{name}");
            assert_eq!(got.tensor.datatype().as_str(), dt, "{name}");
            assert_eq!(
                json!(got.tensor.shape()),
                want["shape"],
                "{name}/{}",
                got.name
            );
            assert!(
                same_values(&values(&got.tensor), &want["values"], dt),
                "{name}/{}: {} vs {}",
                got.name,
                values(&got.tensor),
                want["values"]
            );
        }
        if name == "bytes_base64_json" {
            // the client sends the base64 text; imgclass's Base64 mode decodes it
            let opts = ParseOptions {
                json_bytes: JsonBytes::Base64,
                ..ParseOptions::default()
            };
            let Ok(InferBody::Request(r)) = parse_infer_request(body, None, &opts) else {
                panic!()
            };
            assert_eq!(
                &r.inputs[0].tensor.elements().unwrap()[0][..],
                b"\x89PNG\x00"
            );
        }
        if let Some(k) = case["classification"].as_u64() {
            assert_eq!(req.outputs[0].classification, Some(k as usize), "{name}");
        }
        if name == "mixed" {
            assert_eq!(req.parameters["sequence_id"], 5);
        }

        // A response to it, in the formats it asked for, plus extra outputs.
        let rows = req.inputs[0].tensor.shape()[0];
        let scores: Vec<f32> = (0..rows * 4).map(|i| (i as f32 + 1.0) / 10.0).collect();
        let mut outputs: Vec<InferOutput> = req
            .resolve_outputs(&["probabilities"])
            .unwrap()
            .into_iter()
            .map(|s| InferOutput {
                tensor: match s.classification {
                    Some(k) => {
                        classification(&scores, 4, k, |i| Some(Cow::Owned(format!("class {i}"))))
                            .unwrap()
                    }
                    None => Tensor::from_f32(vec![rows, 4], &scores).unwrap(),
                },
                name: s.name,
                format: s.format,
            })
            .collect();
        if name == "mixed" {
            outputs.push(InferOutput {
                name: "names".into(),
                tensor: Tensor::from_bytes(
                    vec![2],
                    vec![Bytes::from_static(b"x\xffy"), Bytes::new()],
                )
                .unwrap(),
                format: OutputFormat::Binary,
            });
            outputs.push(InferOutput {
                name: "half".into(),
                tensor: Tensor::from_le_bytes(
                    DataType::Fp16,
                    vec![2],
                    Bytes::from_static(&[0x00, 0x3e, 0x00, 0xc0]),
                )
                .unwrap(),
                format: OutputFormat::Json,
            });
            outputs.push(InferOutput {
                name: "flags".into(),
                tensor: Tensor::from_le_bytes(
                    DataType::Bool,
                    vec![3],
                    Bytes::from_static(&[1, 0, 1]),
                )
                .unwrap(),
                format: OutputFormat::Json,
            });
        }
        let enc = InferResponse {
            model_name: "m".into(),
            model_version: "1".into(),
            id: req.id.clone(),
            outputs,
        }
        .encode();
        responses.push_str(
            &json!({"case": name, "header": enc.header_length, "body": b64(&enc.body)}).to_string(),
        );
        responses.push('\n');
    }

    let decoded = run_python(&python, "responses", &responses);
    assert_eq!(decoded.len(), cases.len());
    for d in &decoded {
        let name = d["case"].as_str().unwrap();
        let p = &d["outputs"]["probabilities"];
        match name {
            "bytes_base64_json" => {
                assert_eq!(p["datatype"], "BYTES");
                assert_eq!(p["shape"], json!([1, 3]));
                assert_eq!(p["binary"], false);
                let first = String::from_utf8(unb64(p["values"][0].as_str().unwrap())).unwrap();
                assert_eq!(first, "0.400000:3:class 3");
            }
            _ => {
                assert_eq!(p["datatype"], "FP32", "{name}");
                let rows = p["shape"][0].as_u64().unwrap() as usize;
                let want: Vec<f32> = (0..rows * 4).map(|i| (i as f32 + 1.0) / 10.0).collect();
                assert!(
                    same_values(&p["values"], &json!(want), "FP32"),
                    "{name}: {p}"
                );
                // every other case asks for binary (named or binary_data_output)
                assert_eq!(p["binary"], true, "{name}");
            }
        }
        if name == "fp32_binary" {
            assert_eq!(d["id"], "req-7");
        }
        if name == "mixed" {
            let o = &d["outputs"];
            assert_eq!(o["names"]["values"], json!([b64(b"x\xffy"), ""]));
            assert_eq!(o["half"]["values"], json!([1.5, -2.0]));
            assert_eq!(o["half"]["binary"], true, "FP16 has no JSON form");
            assert_eq!(o["flags"]["values"], json!([true, false, true]));
            assert_eq!(o["flags"]["binary"], false);
        }
    }
}
