//! The uploads: images found on disk, each turned into a complete multipart
//! body once, before the run.
//!
//! Building the body per request would put file reads and copies on the hot
//! path and make the generator, not the server, the thing being measured. A
//! pre-encoded [`Bytes`] is cloned by bumping a reference count.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::LoadtestError;

/// Extensions we upload, lower-case, with the content type sent for each.
const TYPES: &[(&str, &str)] = &[
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("png", "image/png"),
    ("bmp", "image/bmp"),
    ("gif", "image/gif"),
    ("webp", "image/webp"),
    ("tif", "image/tiff"),
    ("tiff", "image/tiff"),
];

/// The content type for a file name, by extension (case-insensitive).
pub fn content_type_for(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    TYPES.iter().find(|(e, _)| *e == ext).map(|(_, t)| *t)
}

/// One image ready to send.
#[derive(Debug, Clone)]
pub struct Payload {
    /// Path relative to `--images`, with `/` separators: unique within the
    /// set, written to `results.csv`.
    pub name: Arc<str>,
    /// The bare file name, written to `results.txt` like the original.
    pub file_name: Arc<str>,
    /// The whole multipart body (boundary, part headers, bytes, trailer).
    pub body: Bytes,
}

/// All payloads of a run plus the multipart content type they share.
#[derive(Debug, Clone)]
pub struct Payloads {
    pub items: Vec<Payload>,
    /// `multipart/form-data; boundary=...`, identical for every body.
    pub content_type: String,
}

/// Finds images under `root` (recursively; or `root` itself when it is a
/// file), sorted by relative path so runs are reproducible.
pub fn discover(root: &Path) -> Result<Vec<PathBuf>, LoadtestError> {
    if root.is_file() {
        return Ok(if content_type_for(root).is_some() {
            vec![root.to_path_buf()]
        } else {
            Vec::new()
        });
    }
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(root).follow_links(true) {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(root).to_path_buf();
            LoadtestError::io(path, e.into())
        })?;
        if entry.file_type().is_file() && content_type_for(entry.path()).is_some() {
            found.push(entry.into_path());
        }
    }
    found.sort();
    Ok(found)
}

/// Reads every image under `root` into memory and encodes its multipart body.
pub fn load(root: &Path, field: &str) -> Result<Payloads, LoadtestError> {
    let paths = discover(root)?;
    if paths.is_empty() {
        return Err(LoadtestError::NoImages(root.to_path_buf()));
    }
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        let data = std::fs::read(&path).map_err(|e| LoadtestError::io(&path, e))?;
        let rel = if root.is_file() {
            Path::new(path.file_name().unwrap_or_default())
        } else {
            path.strip_prefix(root).unwrap_or(&path)
        };
        let name = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| name.clone());
        let content_type = content_type_for(&path).unwrap_or("application/octet-stream");
        files.push((name, file_name, content_type, data));
    }
    let boundary = pick_boundary(files.iter().map(|f| f.3.as_slice()));
    let items = files
        .into_iter()
        .map(|(name, file_name, content_type, data)| Payload {
            body: multipart_body(&boundary, field, &file_name, content_type, &data),
            name: name.into(),
            file_name: file_name.into(),
        })
        .collect();
    Ok(Payloads {
        items,
        content_type: format!("multipart/form-data; boundary={boundary}"),
    })
}

/// A boundary that occurs in none of the files (RFC 2046 requires that).
///
/// Not cryptographic: the clock and the process id are enough to make
/// collisions unlikely, and a collision is checked and retried anyway.
fn pick_boundary<'a>(files: impl Iterator<Item = &'a [u8]> + Clone) -> String {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ u64::from(std::process::id()).rotate_left(32);
    let mut state = seed | 1;
    loop {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let boundary = format!(
            "----imgclass-loadtest-{:016x}",
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        );
        let needle = boundary.as_bytes();
        if !files
            .clone()
            .any(|f| f.windows(needle.len()).any(|w| w == needle))
        {
            return boundary;
        }
    }
}

/// Encodes one `multipart/form-data` body with a single file part.
pub fn multipart_body(
    boundary: &str,
    field: &str,
    file_name: &str,
    content_type: &str,
    data: &[u8],
) -> Bytes {
    let mut body = BytesMut::with_capacity(data.len() + 256);
    body.put_slice(b"--");
    body.put_slice(boundary.as_bytes());
    body.put_slice(b"\r\nContent-Disposition: form-data; name=\"");
    body.put_slice(quote_param(field).as_bytes());
    body.put_slice(b"\"; filename=\"");
    body.put_slice(quote_param(file_name).as_bytes());
    body.put_slice(b"\"\r\nContent-Type: ");
    body.put_slice(content_type.as_bytes());
    body.put_slice(b"\r\n\r\n");
    body.put_slice(data);
    body.put_slice(b"\r\n--");
    body.put_slice(boundary.as_bytes());
    body.put_slice(b"--\r\n");
    body.freeze()
}

/// Escapes a quoted header parameter the way browsers do (WHATWG form
/// encoding): `"` and line breaks are percent-encoded.
fn quote_param(s: &str) -> String {
    s.replace('"', "%22")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type_for(Path::new("a/B.JPG")), Some("image/jpeg"));
        assert_eq!(content_type_for(Path::new("x.tif")), Some("image/tiff"));
        assert_eq!(content_type_for(Path::new("x.webp")), Some("image/webp"));
        assert_eq!(content_type_for(Path::new("notes.txt")), None);
        assert_eq!(content_type_for(Path::new("README")), None);
    }

    #[test]
    fn body_layout() {
        let body = multipart_body("XYZ", "image", "a\"b.png", "image/png", b"\x89PNG");
        let expected = b"--XYZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a%22b.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n--XYZ--\r\n";
        assert_eq!(&body[..], &expected[..]);
    }

    #[test]
    fn discovers_recursively_and_sorted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sub/deeper")).unwrap();
        for f in [
            "b.png",
            "a.JPG",
            "sub/c.bmp",
            "sub/deeper/d.tiff",
            "skip.txt",
        ] {
            std::fs::write(dir.path().join(f), b"data").unwrap();
        }
        let payloads = load(dir.path(), "image").unwrap();
        let names: Vec<_> = payloads.items.iter().map(|p| &*p.name).collect();
        assert_eq!(names, ["a.JPG", "b.png", "sub/c.bmp", "sub/deeper/d.tiff"]);
        assert_eq!(&*payloads.items[3].file_name, "d.tiff");
        assert!(
            payloads
                .content_type
                .starts_with("multipart/form-data; boundary=")
        );
        assert!(matches!(
            load(&dir.path().join("sub/deeper/none"), "image"),
            Err(LoadtestError::Io { .. } | LoadtestError::NoImages(_))
        ));
    }
}
