//! The images folder: every accepted upload once under its content hash,
//! with a sidecar JSON result, safe for several replicas sharing the folder.
//!
//! Layout: `<root>/<first 2 hex>/<sha256>.<ext>` and `<sha256>.json`.
//!
//! - Names come from the content hash only; a client's filename is kept as
//!   sanitised metadata in the sidecar and never touches a path.
//! - Each file is written to a temporary file in the same folder, fsynced,
//!   then renamed over the final name. A rename within one folder is atomic
//!   on POSIX file systems (and NFS), so readers and other replicas see
//!   either no file or a whole one, never a torn write.
//! - Two replicas storing the same image write identical bytes to the same
//!   name: whichever rename lands last wins and nothing is lost. A file that
//!   already exists is not rewritten, so a result is stored once.
//! - The sidecar is written after the image: a listed result always has its
//!   image.
//! - History is read from the folder itself (no per-replica index), so every
//!   replica lists the results of all of them.
//!
//! Writes are taken off the request path by [`StoreQueue`]: an fsync costs
//! several milliseconds, more than the whole rest of a request's overhead.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use imgclass_core::{ImageFormat, Prediction};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::metrics::Metrics;

const FORMATS: [ImageFormat; 6] = [
    ImageFormat::Jpeg,
    ImageFormat::Png,
    ImageFormat::Bmp,
    ImageFormat::Gif,
    ImageFormat::Webp,
    ImageFormat::Tiff,
];

/// Temporary files start with this, so listings skip them.
const TEMP_PREFIX: &str = ".tmp-";
/// Temporary files older than this were left by a crash and are removed at start.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// The sidecar JSON next to each stored image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredRecord {
    /// sha256 of the image bytes, lowercase hex.
    pub id: String,
    pub format: ImageFormat,
    pub bytes: usize,
    pub width: u32,
    pub height: u32,
    pub model: String,
    pub engine: String,
    /// The five most probable classes.
    pub predictions: Vec<Prediction>,
    /// When it was stored: RFC 3339, UTC, microseconds.
    pub created: String,
    /// The client's filename, sanitised; metadata only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

/// One page of `/api/history`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HistoryPage {
    /// Newest first.
    pub items: Vec<StoredRecord>,
    /// Pass as `before` to get the next page; absent on the last page.
    pub next_before: Option<String>,
}

/// The current time in the sidecar format (microseconds, so that results
/// rarely share a timestamp).
pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses `before`: RFC 3339 (any offset) or Unix milliseconds.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return DateTime::from_timestamp_millis(text.parse().ok()?);
    }
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// True for a sha256 in lowercase hex: the only ids that map to paths.
pub fn valid_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A client filename reduced to harmless metadata: the last path component,
/// letters, digits, space, `.`, `-`, `_` only, no leading dots, at most 100
/// characters. `None` when nothing is left.
pub fn sanitize_filename(name: &str) -> Option<String> {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | ' '))
        .take(100)
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').trim().to_string();
    (!cleaned.is_empty()).then_some(cleaned)
}

/// The images folder (blocking file I/O).
pub struct Storage {
    root: PathBuf,
    /// sidecar path → (modified, created in µs): sidecars are written once,
    /// so history reads each file once rather than on every call.
    created_cache: Mutex<HashMap<PathBuf, (SystemTime, i64)>>,
}

impl Storage {
    /// Creates the folder if needed, checks it is writable and removes
    /// temporary files left by a crash.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(root)?;
        let probe = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(root)?;
        drop(probe);
        let storage = Storage {
            root: root.to_path_buf(),
            created_cache: Mutex::new(HashMap::new()),
        };
        storage.remove_stale_temps();
        Ok(storage)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn shard(&self, id: &str) -> PathBuf {
        self.root.join(&id[..2])
    }

    /// Where an image of `id` and `format` lives.
    pub fn image_path(&self, id: &str, format: ImageFormat) -> PathBuf {
        self.shard(id).join(format!("{id}.{}", format.extension()))
    }

    pub fn sidecar_path(&self, id: &str) -> PathBuf {
        self.shard(id).join(format!("{id}.json"))
    }

    /// Stores an image and its sidecar unless already there. Returns true
    /// when something was written.
    pub fn store(&self, bytes: &[u8], record: &StoredRecord) -> std::io::Result<bool> {
        if !valid_id(&record.id) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "invalid image id",
            ));
        }
        let dir = self.shard(&record.id);
        std::fs::create_dir_all(&dir)?;
        let image = self.image_path(&record.id, record.format);
        let sidecar = self.sidecar_path(&record.id);
        let mut wrote = false;
        if !image.exists() {
            write_atomic(&dir, &image, bytes)?;
            wrote = true;
        }
        if !sidecar.exists() {
            let json = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
            write_atomic(&dir, &sidecar, &json)?;
            wrote = true;
        }
        if wrote {
            // Make the renames themselves durable.
            std::fs::File::open(&dir)?.sync_all()?;
        }
        Ok(wrote)
    }

    /// The stored image of `id`, if any.
    pub fn find_image(&self, id: &str) -> Option<(PathBuf, ImageFormat)> {
        if !valid_id(id) {
            return None;
        }
        FORMATS
            .into_iter()
            .map(|f| (self.image_path(id, f), f))
            .find(|(p, _)| p.is_file())
    }

    /// The sidecar of `id`, if any.
    pub fn record(&self, id: &str) -> Option<StoredRecord> {
        if !valid_id(id) {
            return None;
        }
        read_record(&self.sidecar_path(id))
    }

    /// The newest `limit` results created strictly before `before`, across
    /// every replica writing to this folder. A page never ends between two
    /// results with the same timestamp (it grows instead), so paging with
    /// `before = next_before` neither skips nor repeats.
    pub fn history(
        &self,
        limit: usize,
        before: Option<DateTime<Utc>>,
    ) -> std::io::Result<HistoryPage> {
        let before_us = before.map(|t| t.timestamp_micros());
        let mut found: Vec<(i64, PathBuf)> = Vec::new();
        let mut seen = HashSet::new();
        let mut cache = self.created_cache.lock().unwrap_or_else(|p| p.into_inner());
        for shard in std::fs::read_dir(&self.root)? {
            let shard = shard?;
            let name = shard.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.len() != 2
                || !name.bytes().all(|b| b.is_ascii_hexdigit())
                || !shard.path().is_dir()
            {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(shard.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let file = entry.file_name();
                let Some(file) = file.to_str() else { continue };
                if file.starts_with('.') || !file.ends_with(".json") {
                    continue;
                }
                let Ok(modified) = entry.metadata().and_then(|m| m.modified()) else {
                    continue;
                };
                let created = match cache.get(&path) {
                    Some((m, c)) if *m == modified => *c,
                    _ => {
                        let Some(c) = read_record(&path).and_then(|r| parse_time(&r.created))
                        else {
                            continue;
                        };
                        let c = c.timestamp_micros();
                        cache.insert(path.clone(), (modified, c));
                        c
                    }
                };
                seen.insert(path.clone());
                if before_us.is_none_or(|b| created < b) {
                    found.push((created, path));
                }
            }
        }
        cache.retain(|p, _| seen.contains(p));
        drop(cache);
        found.sort_by(|a, b| b.cmp(a));
        let mut take = limit.min(found.len());
        while take > 0 && take < found.len() && found[take].0 == found[take - 1].0 {
            take += 1;
        }
        let more = found.len() > take;
        let items: Vec<StoredRecord> = found
            .into_iter()
            .take(take)
            .filter_map(|(_, p)| read_record(&p))
            .collect();
        let next_before = if more {
            items.last().map(|r| r.created.clone())
        } else {
            None
        };
        Ok(HistoryPage { items, next_before })
    }

    fn remove_stale_temps(&self) {
        let now = SystemTime::now();
        let stale = |p: &Path| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(TEMP_PREFIX))
                && std::fs::metadata(p)
                    .and_then(|m| m.modified())
                    .is_ok_and(|m| now.duration_since(m).unwrap_or_default() > STALE_TEMP)
        };
        let Ok(shards) = std::fs::read_dir(&self.root) else {
            return;
        };
        for shard in shards.flatten() {
            let Ok(entries) = std::fs::read_dir(shard.path()) else {
                continue;
            };
            for e in entries.flatten() {
                if stale(&e.path()) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

fn read_record(path: &Path) -> Option<StoredRecord> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "unreadable sidecar skipped");
            None
        }
    }
}

/// Temporary file in the same folder, fsync, rename over `dest`.
fn write_atomic(dir: &Path, dest: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(dest).map_err(|e| e.error)?;
    Ok(())
}

/// Most writes waiting or running; past it, requests wait for a slot, so a
/// slow disk slows uploads down rather than filling memory.
const MAX_PENDING_WRITES: usize = 256;
/// Files written at once (blocking threads).
const WRITERS: usize = 4;

/// Background writes with bounded backlog and concurrency.
pub(crate) struct StoreQueue {
    shared: Arc<QueueShared>,
}

struct QueueShared {
    storage: Arc<Storage>,
    backlog: Arc<Semaphore>,
    writers: Semaphore,
    /// Ids being written by this process, so a burst of the same image
    /// writes once.
    pending: Mutex<HashSet<String>>,
    metrics: Arc<Metrics>,
}

impl StoreQueue {
    pub fn new(storage: Storage, metrics: Arc<Metrics>) -> Self {
        StoreQueue {
            shared: Arc::new(QueueShared {
                storage: Arc::new(storage),
                backlog: Arc::new(Semaphore::new(MAX_PENDING_WRITES)),
                writers: Semaphore::new(WRITERS),
                pending: Mutex::new(HashSet::new()),
                metrics,
            }),
        }
    }

    pub fn storage(&self) -> &Arc<Storage> {
        &self.shared.storage
    }

    /// Queues a write; returns at once unless the backlog is full.
    pub async fn submit(&self, bytes: Bytes, record: StoredRecord) {
        {
            let mut pending = self
                .shared
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if !pending.insert(record.id.clone()) {
                return;
            }
        }
        let Ok(slot) = self.shared.backlog.clone().acquire_owned().await else {
            return;
        };
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let Ok(_writer) = shared.writers.acquire().await else {
                return;
            };
            let id = record.id.clone();
            let task = shared.clone();
            let result =
                tokio::task::spawn_blocking(move || task.storage.store(&bytes, &record)).await;
            match result {
                Ok(Ok(true)) => shared.metrics.stored(),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => {
                    shared.metrics.store_failed();
                    tracing::error!(id = %id, error = %e, "cannot store upload");
                }
                Err(e) => {
                    shared.metrics.store_failed();
                    tracing::error!(id = %id, error = %e, "storage task failed");
                }
            }
            shared
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        });
    }

    /// Waits until every write queued so far has finished.
    pub async fn idle(&self) {
        if let Ok(all) = self
            .shared
            .backlog
            .acquire_many(MAX_PENDING_WRITES as u32)
            .await
        {
            drop(all);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, created: &str) -> StoredRecord {
        StoredRecord {
            id: id.to_string(),
            format: ImageFormat::Png,
            bytes: 3,
            width: 1,
            height: 1,
            model: "m".into(),
            engine: "fake".into(),
            predictions: vec![],
            created: created.into(),
            filename: Some("a.png".into()),
        }
    }

    fn id(n: u8) -> String {
        format!("{:02x}", n).repeat(32)
    }

    #[test]
    fn ids_and_filenames_are_validated() {
        assert!(valid_id(&id(1)));
        assert!(!valid_id("../../etc/passwd"));
        assert!(!valid_id(&id(0xab).to_uppercase()));
        assert!(!valid_id(&format!("{}/", &id(1)[..63])));
        assert_eq!(
            sanitize_filename("../../etc/passwd").as_deref(),
            Some("passwd")
        );
        assert_eq!(
            sanitize_filename("C:\\Users\\me\\cat photo.JPG").as_deref(),
            Some("cat photo.JPG")
        );
        assert_eq!(sanitize_filename("..").as_deref(), None);
        assert_eq!(
            sanitize_filename("<script>.png").as_deref(),
            Some("script.png")
        );
        assert_eq!(
            sanitize_filename(&"x".repeat(500)).map(|s| s.len()),
            Some(100)
        );
    }

    #[test]
    fn stores_once_atomically_and_lists_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        let a = record(&id(0xab), "2024-01-01T00:00:01.000Z");
        assert!(s.store(b"png", &a).unwrap());
        assert!(!s.store(b"png", &a).unwrap(), "second store writes nothing");
        let b = record(&id(0x01), "2024-01-01T00:00:02.000Z");
        s.store(b"png", &b).unwrap();
        let c = record(&id(0x02), "2024-01-01T00:00:03.000Z");
        s.store(b"png", &c).unwrap();
        let image = dir.path().join("ab").join(format!("{}.png", id(0xab)));
        assert_eq!(std::fs::read(&image).unwrap(), b"png");
        assert_eq!(s.find_image(&id(0xab)), Some((image, ImageFormat::Png)));
        assert_eq!(s.record(&id(0xab)), Some(a.clone()));
        // No temporary files left behind.
        let shard: Vec<_> = std::fs::read_dir(dir.path().join("ab"))
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(shard.len(), 2);

        let page = s.history(2, None).unwrap();
        let ids: Vec<_> = page.items.iter().map(|r| r.id.clone()).collect();
        assert_eq!(ids, vec![id(0x02), id(0x01)]);
        let next = parse_time(page.next_before.as_deref().unwrap());
        let page = s.history(2, next).unwrap();
        assert_eq!(page.items, vec![a]);
        assert!(page.next_before.is_none());
        assert_eq!(
            s.history(10, parse_time("1704067202000"))
                .unwrap()
                .items
                .len(),
            1
        );
    }

    #[test]
    fn stray_files_do_not_break_history() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        s.store(b"x", &record(&id(3), "2024-01-01T00:00:01.000Z"))
            .unwrap();
        std::fs::write(dir.path().join("03").join("junk.json"), b"{not json").unwrap();
        std::fs::write(dir.path().join("03").join(".tmp-abc"), b"partial").unwrap();
        std::fs::create_dir(dir.path().join("zz")).unwrap();
        assert_eq!(s.history(10, None).unwrap().items.len(), 1);
    }
}
