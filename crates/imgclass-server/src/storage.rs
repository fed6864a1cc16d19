//! The images folder: every accepted upload once under its content hash,
//! with a sidecar JSON result, safe for several replicas sharing the folder.
//!
//! Layout: `<root>/<first 2 hex>/<sha256>.<ext>` and `<sha256>.json`.
//!
//! - Names come from the content hash only; a client's filename is kept as
//!   sanitised metadata in the sidecar and never touches a path.
//! - Each file is written to a temporary file (`.tmp-*`) in its final
//!   folder, fsynced, then renamed over the final name. A rename within one
//!   folder is atomic on POSIX file systems (and NFS), so readers and other
//!   replicas see either no file or a whole one, never a torn write.
//! - Writes come in groups ([`Storage::store_group`], fed by the
//!   `commit` module): all files of a group are written, then fsynced,
//!   then the images renamed and their folders fsynced, then the sidecars
//!   renamed and their folders fsynced. So a sidecar is never durable
//!   before its image, and one journal commit serves a whole group.
//! - Two replicas storing the same image write identical bytes to the same
//!   name: whichever rename lands last wins and nothing is lost. A file that
//!   already exists is not rewritten, so a result is stored once.
//! - History is read from the folder itself (no per-replica index), so every
//!   replica lists the results of all of them. Names starting with `.` (the
//!   temporary files) and sidecars that do not parse are skipped.
//! - At start, and every [`STALE_TEMP`] after, temporary files older than
//!   [`STALE_TEMP`] are removed: a crash left them (a live write renames its
//!   files within one commit).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};
use imgclass_core::{ImageFormat, Prediction};
use serde::{Deserialize, Serialize};
use tempfile::NamedTempFile;

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
/// Temporary files older than this were left by a crash and are removed.
/// Far longer than a commit takes (milliseconds, seconds on a slow network
/// volume), so another replica's write in progress is never removed.
pub const STALE_TEMP: Duration = Duration::from_secs(300);

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

    /// Stores an image and its sidecar unless already there, fsynced.
    /// Returns true when something was written.
    pub fn store(&self, bytes: &[u8], record: &StoredRecord) -> std::io::Result<bool> {
        self.store_group(&[(bytes, record)], true)
            .pop()
            .expect("one result per item")
    }

    /// Stores several images and their sidecars as one group (see the
    /// module doc for the order of writes, renames and fsyncs). With
    /// `sync` off nothing is fsynced: the files survive a crash of the
    /// process (they are in the kernel's cache) but not a power cut.
    /// Returns, per item, whether something was written; an item that
    /// fails does not fail the others, a folder that cannot be synced fails
    /// every item in it.
    pub fn store_group(
        &self,
        items: &[(&[u8], &StoredRecord)],
        sync: bool,
    ) -> Vec<std::io::Result<bool>> {
        // The same image twice in one group (a burst of one photo) is
        // written once; the others share its outcome.
        let mut first_of: HashMap<&str, usize> = HashMap::new();
        let copies: Vec<Option<usize>> = items
            .iter()
            .enumerate()
            .map(|(i, (_, r))| match first_of.get(r.id.as_str()) {
                Some(&first) => Some(first),
                None => {
                    first_of.insert(&r.id, i);
                    None
                }
            })
            .collect();
        let mut staged: Vec<std::io::Result<Staged>> = items
            .iter()
            .zip(&copies)
            .map(|((bytes, record), copy)| match copy {
                Some(_) => Ok(Staged::nothing()),
                None => self.stage(bytes, record, sync),
            })
            .collect();
        let mut new_shards = false;
        for s in staged.iter().flatten() {
            new_shards |= s.new_shard;
        }
        // A shard created by this group is an entry of the root folder.
        if sync
            && new_shards
            && let Err(e) = sync_dir(&self.root)
        {
            return fail_all(items.len(), &e);
        }
        // Images first, their folders synced, then the sidecars: a durable
        // sidecar always has a durable image.
        publish(&mut staged, |s| s.image.take(), sync);
        publish(&mut staged, |s| s.sidecar.take(), sync);
        let mut results: Vec<std::io::Result<bool>> =
            staged.into_iter().map(|s| s.map(|s| s.wrote)).collect();
        for (i, copy) in copies.into_iter().enumerate() {
            if let Some(first) = copy {
                results[i] = match &results[first] {
                    Ok(_) => Ok(false),
                    Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
                };
            }
        }
        results
    }

    /// Writes (and with `sync`, fsyncs) the temporary files of one item.
    fn stage(&self, bytes: &[u8], record: &StoredRecord, sync: bool) -> std::io::Result<Staged> {
        if !valid_id(&record.id) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "invalid image id",
            ));
        }
        let dir = self.shard(&record.id);
        let new_shard = !dir.is_dir();
        if new_shard {
            std::fs::create_dir_all(&dir)?;
        }
        let image_path = self.image_path(&record.id, record.format);
        let sidecar_path = self.sidecar_path(&record.id);
        let image = match image_path.exists() {
            true => None,
            false => Some((write_temp(&dir, bytes, sync)?, image_path)),
        };
        let sidecar = match sidecar_path.exists() {
            true => None,
            false => {
                let json = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
                Some((write_temp(&dir, &json, sync)?, sidecar_path))
            }
        };
        Ok(Staged {
            wrote: image.is_some() || sidecar.is_some(),
            dir,
            new_shard,
            image,
            sidecar,
        })
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

    /// Removes temporary files older than [`STALE_TEMP`] (left by a crash).
    pub fn remove_stale_temps(&self) {
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

/// One item of a group between writing and renaming: its temporary
/// files and their final names.
struct Staged {
    wrote: bool,
    dir: PathBuf,
    new_shard: bool,
    image: Option<(NamedTempFile, PathBuf)>,
    sidecar: Option<(NamedTempFile, PathBuf)>,
}

impl Staged {
    /// An item with nothing to write (a copy of an earlier one).
    fn nothing() -> Self {
        Staged {
            wrote: false,
            dir: PathBuf::new(),
            new_shard: false,
            image: None,
            sidecar: None,
        }
    }
}

type Pending = Option<(NamedTempFile, PathBuf)>;

/// Renames the file `which` picks of every staged item, then (with `sync`)
/// fsyncs each folder a rename went to once. An item whose rename or
/// folder sync fails becomes that error (its other temporary file is
/// removed when dropped).
fn publish(staged: &mut [std::io::Result<Staged>], which: fn(&mut Staged) -> Pending, sync: bool) {
    let mut dirs = BTreeSet::new();
    for item in staged.iter_mut() {
        let Ok(s) = item else { continue };
        let Some((tmp, dest)) = which(s) else {
            continue;
        };
        match tmp.persist(&dest) {
            Ok(_) => {
                dirs.insert(s.dir.clone());
            }
            Err(e) => *item = Err(e.error),
        }
    }
    if !sync {
        return;
    }
    for dir in dirs {
        if let Err(e) = sync_dir(&dir) {
            for item in staged.iter_mut() {
                if item.as_ref().is_ok_and(|s| s.dir == dir) {
                    *item = Err(std::io::Error::new(e.kind(), e.to_string()));
                }
            }
        }
    }
}

fn fail_all(n: usize, e: &std::io::Error) -> Vec<std::io::Result<bool>> {
    (0..n)
        .map(|_| Err(std::io::Error::new(e.kind(), e.to_string())))
        .collect()
}

/// Makes the entries (renames, new files) of `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// A temporary file in `dir` holding `data`, fsynced with `sync`.
fn write_temp(dir: &Path, data: &[u8], sync: bool) -> std::io::Result<NamedTempFile> {
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)?;
    tmp.write_all(data)?;
    if sync {
        tmp.as_file().sync_data()?;
    }
    Ok(tmp)
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
    fn a_group_writes_each_image_once_and_fails_items_not_groups() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        let (a, b, bad) = (
            record(&id(0x10), "2024-01-01T00:00:01.000Z"),
            record(&id(0x11), "2024-01-01T00:00:02.000Z"),
            record("not-an-id", "2024-01-01T00:00:03.000Z"),
        );
        let items: Vec<(&[u8], &StoredRecord)> =
            vec![(b"a", &a), (b"a", &a), (b"b", &b), (b"x", &bad)];
        let results = s.store_group(&items, true);
        let wrote: Vec<Option<bool>> = results.iter().map(|r| r.as_ref().ok().copied()).collect();
        assert_eq!(wrote, vec![Some(true), Some(false), Some(true), None]);
        assert_eq!(s.record(&a.id), Some(a.clone()));
        assert_eq!(s.record(&b.id), Some(b.clone()));
        // Unsynced groups are stored alike (only durability differs).
        let c = record(&id(0x12), "2024-01-01T00:00:04.000Z");
        assert!(s.store_group(&[(b"c", &c)], false)[0].as_ref().unwrap());
        assert_eq!(s.history(10, None).unwrap().items.len(), 3);
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
