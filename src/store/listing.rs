//! Reading many entries at once: a directory's entries (`list`, `load_json_dir`), the
//! parallel batched scan a restart reads a million records with (`scan_map`), and setting a
//! corrupt entry aside.

use std::path::{Path, PathBuf};

use super::batch::Batch;
use super::{Backend, Store, StoreError};

impl Store {
    /// Every entry directly in `dir` whose name ends with `suffix`: (location, bytes).
    pub fn list(&self, dir: &str, suffix: &str) -> Vec<Result<(PathBuf, Vec<u8>), StoreError>> {
        match &self.backend {
            Backend::Fs(_) => self
                .files(dir, suffix)
                .into_iter()
                .map(|path| match std::fs::read(&path) {
                    Ok(bytes) => Ok((path, bytes)),
                    Err(source) => Err(StoreError::Read { path, source }),
                })
                .collect(),
            Backend::Embedded { db, .. } => self.direct_entries(dir, suffix, db.list(dir)),
            Backend::Etcd(etcd) => self.direct_entries(dir, suffix, etcd.list(dir)),
        }
    }

    /// The entries of a key-value listing of `dir` that sit directly in it and end with
    /// `suffix`.
    fn direct_entries(
        &self,
        dir: &str,
        suffix: &str,
        listing: Result<Vec<(String, Vec<u8>)>, StoreError>,
    ) -> Vec<Result<(PathBuf, Vec<u8>), StoreError>> {
        match listing {
            Ok(entries) => entries
                .into_iter()
                .filter(|(key, _)| key.ends_with(suffix) && !key[dir.len() + 1..].contains('/'))
                .map(|(key, bytes)| Ok((self.path_of(&key), bytes)))
                .collect(),
            Err(e) => vec![Err(e)],
        }
    }

    /// The files of `dir` (fs only) whose names end with `suffix`; never temporaries.
    fn files(&self, dir: &str, suffix: &str) -> Vec<PathBuf> {
        let Backend::Fs(root) = &self.backend else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.ends_with(suffix) && !name.starts_with('.')
            })
            .map(|e| e.path())
            .collect()
    }

    /// Every `*.json` file of `dir` (relative to `data_dir`), parsed.
    pub fn load_json_dir<T: serde::de::DeserializeOwned>(
        &self,
        dir: &str,
    ) -> Vec<Result<T, StoreError>> {
        self.list(dir, ".json")
            .into_iter()
            .map(|entry| {
                let (path, bytes) = entry?;
                serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                    path,
                    reason: e.to_string(),
                })
            })
            .collect()
    }

    /// What `map` makes of every entry directly in `dir` whose name ends with `suffix`, in
    /// key order, reading in batches and mapping each batch on every core (`map` gets the
    /// entry's key and bytes; [`path_of`](Self::path_of) names its location). The whole
    /// directory is never in memory at once: a million records are read at restart this way.
    /// With the read failure, if one cut the scan short (what was read before it is kept).
    pub fn scan_map<T: Send>(
        &self,
        dir: &str,
        suffix: &str,
        map: impl Fn(&str, &[u8]) -> T + Sync,
    ) -> (Vec<T>, Option<StoreError>) {
        const BATCH: usize = 8 * 1024;
        let mut out = Vec::new();
        let direct = |key: &str| key.ends_with(suffix) && !key[dir.len() + 1..].contains('/');
        let map_batch = |out: &mut Vec<T>, batch: &Batch| {
            let entries: Vec<(&str, &[u8])> =
                batch.entries().filter(|(key, _)| direct(key)).collect();
            out.extend(crate::parallel::map_on_every_core(
                entries,
                |(key, bytes)| map(key, bytes),
            ));
        };
        let failure = match &self.backend {
            // The next batch is read while this one is mapped; mapped batches go back to
            // the reader to be filled again.
            Backend::Embedded { db, .. } => std::thread::scope(|scope| {
                // A directory that fills a whole first batch is a big one (a million sites):
                // room for every entry of the file is reserved once instead of the output
                // being copied as it doubles (pages never written are never touched).
                let entries = db
                    .entry_count()
                    .map_or(0, |n| usize::try_from(n).unwrap_or(0));
                let (full, ready) = std::sync::mpsc::sync_channel::<Batch>(1);
                let (emptied, recycled) = std::sync::mpsc::channel::<Batch>();
                let reader = scope.spawn(move || {
                    db.scan(dir, BATCH, |batch| {
                        let _ = full.send(batch);
                        recycled.try_recv().unwrap_or_default()
                    })
                });
                for mut batch in ready {
                    if out.is_empty() && batch.len() == BATCH {
                        out.reserve(entries);
                    }
                    map_batch(&mut out, &batch);
                    batch.clear();
                    let _ = emptied.send(batch);
                }
                reader
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                    .err()
            }),
            _ => {
                let mut first_error = None;
                let mut batch = Batch::default();
                for entry in self.list(dir, suffix) {
                    match entry {
                        Ok((path, bytes)) => {
                            batch.push(&self.key_of(&path).unwrap_or_default(), &bytes);
                        }
                        Err(e) => {
                            first_error.get_or_insert(e);
                        }
                    }
                    if batch.len() == BATCH {
                        map_batch(&mut out, &batch);
                        batch.clear();
                    }
                }
                map_batch(&mut out, &batch);
                first_error
            }
        };
        (out, failure)
    }

    /// Moves a corrupt entry out of the way (kept for inspection, never loaded again) and
    /// returns its new location.
    pub fn set_aside(&self, path: &Path) -> Option<PathBuf> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        match &self.backend {
            Backend::Fs(_) => {
                let mut name = path.file_name()?.to_os_string();
                name.push(format!(".corrupt-{stamp}"));
                let kept = path.with_file_name(name);
                std::fs::rename(path, &kept).ok()?;
                Some(kept)
            }
            Backend::Embedded { .. } | Backend::Etcd(_) => {
                let key = self.key_of(path)?;
                let bytes = self.get(&key).ok()??;
                let kept = format!("{key}.corrupt-{stamp}");
                self.put(&kept, &bytes, 0o600).ok()?;
                self.remove(&key).ok()?;
                Some(self.path_of(&kept))
            }
        }
    }
}
