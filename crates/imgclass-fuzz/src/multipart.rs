//! The `/classify` body reader ([`imgclass_server::read_upload`]):
//! multipart forms (what browsers and the seed's clients send) and raw
//! image bodies.

use arbitrary::{Arbitrary, Unstructured};
use axum::body::Body;
use axum::extract::Request;
use imgclass_server::{ApiError, Upload, read_upload};

/// Body limit of the cases (the route's limit is a layer around the
/// reader; this is the 413 message's figure).
const LIMIT: usize = 4 << 20;

/// Reads `body` sent with `content_type` as `/classify` would (a content
/// type that is no valid header value is left out: hyper refuses such a
/// request before any handler runs).
pub fn read(content_type: &[u8], body: &[u8]) -> Result<Upload, ApiError> {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime");
    }
    let mut req = Request::builder().method("POST").uri("/classify");
    if let Ok(v) = axum::http::HeaderValue::from_bytes(content_type) {
        req = req.header("content-type", v);
    }
    let req = req.body(Body::from(body.to_vec())).expect("a request");
    RUNTIME.with(|rt| rt.block_on(read_upload(req, LIMIT)))
}

/// The invariants of any body: a client mistake is a 4xx, never a 5xx;
/// an upload is part of the body; a filename is harmless.
pub fn check(content_type: &[u8], body: &[u8]) -> Result<Upload, ApiError> {
    let result = read(content_type, body);
    match &result {
        Ok(u) => {
            assert!(!u.bytes.is_empty() && u.bytes.len() <= body.len());
            if let Some(name) = &u.filename {
                assert!(!name.is_empty() && name.chars().count() <= 100, "{name:?}");
                assert!(
                    !name.contains(['/', '\\']) && !name.starts_with('.'),
                    "{name:?}"
                );
            }
        }
        Err(e) => assert!(
            e.status().is_client_error(),
            "a body error must be the client's: {} {e}",
            e.status()
        ),
    }
    result
}

/// Content types a generated field may carry.
const FIELD_TYPES: [&str; 5] = [
    "image/jpeg",
    "image/png",
    "application/octet-stream",
    "text/plain; charset=utf-8",
    "image/x-unknown",
];

/// One field of a generated form.
#[derive(Arbitrary, Debug, Clone)]
pub struct Field {
    /// Named `image` (the upload field) or after `name`.
    pub image: bool,
    pub name: String,
    pub filename: Option<String>,
    /// An index into a few real content types.
    pub content_type: Option<u8>,
    pub data: Vec<u8>,
}

/// A generated multipart form, well-formed by construction unless
/// `unterminated`: names and filenames are reduced to characters a header
/// value may carry unquoted.
#[derive(Arbitrary, Debug, Clone)]
pub struct Form {
    pub boundary: u32,
    pub fields: Vec<Field>,
    /// Leave out the closing boundary.
    pub unterminated: bool,
}

/// `s` without the characters a quoted header value cannot hold.
fn header_safe(s: &str) -> String {
    s.chars()
        .filter(|c| (c.is_ascii_graphic() && !matches!(c, '"' | '\\' | ';')) || *c == ' ')
        .collect()
}

impl Form {
    pub fn boundary(&self) -> String {
        format!("imgclass-fuzz-{:08x}", self.boundary)
    }

    pub fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={}", self.boundary())
    }

    fn field_name(f: &Field) -> String {
        if f.image {
            return "image".into();
        }
        let name: String = f.name.chars().filter(char::is_ascii_alphanumeric).collect();
        match name.as_str() {
            "" | "image" => "other".into(),
            _ => name,
        }
    }

    /// The body, as a browser would encode it.
    pub fn encode(&self) -> Vec<u8> {
        let b = self.boundary();
        let mut out = Vec::new();
        for f in &self.fields {
            out.extend_from_slice(format!("--{b}\r\n").as_bytes());
            let mut disposition = format!("form-data; name=\"{}\"", Self::field_name(f));
            if let Some(name) = &f.filename {
                disposition.push_str(&format!("; filename=\"{}\"", header_safe(name)));
            }
            out.extend_from_slice(format!("Content-Disposition: {disposition}\r\n").as_bytes());
            if let Some(i) = f.content_type {
                let ct = FIELD_TYPES[i as usize % FIELD_TYPES.len()];
                out.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&f.data);
            out.extend_from_slice(b"\r\n");
        }
        if !self.unterminated {
            out.extend_from_slice(format!("--{b}--\r\n").as_bytes());
        }
        out
    }

    /// What the reader must return: the first `image` field's data
    /// (`Some(None)`: no image or an empty one, a 400). `None` when the
    /// form is cut short or a field's data contains the boundary, where
    /// only the invariants of [`check`] apply.
    pub fn expected(&self) -> Option<Option<&[u8]>> {
        let b = format!("--{}", self.boundary());
        let clean = !self.unterminated
            && !self.fields.is_empty()
            && self
                .fields
                .iter()
                .all(|f| !f.data.windows(b.len()).any(|w| w == b.as_bytes()));
        clean.then(|| {
            self.fields
                .iter()
                .find(|f| f.image)
                .map(|f| f.data.as_slice())
                .filter(|d| !d.is_empty())
        })
    }
}

/// A structured case: a form from `bytes`, checked against what it must
/// give when well-formed.
pub fn check_form(form: &Form) {
    let body = form.encode();
    let result = check(form.content_type().as_bytes(), &body);
    if let Some(expected) = form.expected() {
        match (expected, &result) {
            (Some(data), Ok(u)) => assert_eq!(&u.bytes[..], data, "the image field's bytes"),
            (None, Err(ApiError::NoImage)) => {}
            (want, got) => panic!("well-formed {form:?}: expected {want:?}, got {got:?}"),
        }
    }
}

/// The `cargo fuzz` entry point: a structured form from the bytes.
pub fn fuzz_one(bytes: &[u8]) {
    if let Ok(form) = Form::arbitrary(&mut Unstructured::new(bytes)) {
        check_form(&form);
    }
}
