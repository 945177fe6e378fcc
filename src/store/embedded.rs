//! The embedded backend, the default for one node: every entry of the store in one
//! transactional file, `data_dir/store.redb` (redb: copy-on-write B-tree, checksummed, one
//! fsync per commit). One file instead of two per site keeps a million sites to one sequential
//! read at restart and one small commit per write. Other processes on the machine (the CLI's
//! `ca root` while the edge runs) may open it at the same time: redb's multi-writer mode
//! serialises their write transactions.
//!
//! Also owns the migration from the earlier one-file-per-entry layout (`fs`): on the first
//! open of a data directory that has it, every entry is copied in one transaction and the old
//! directories are moved under `data_dir/fs-migrated/`, so nothing is read twice.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use redb::{
    ConcurrencyMode, Database, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition,
};

use super::StoreError;
use super::batch::Batch;

/// The one table: store key (`certs/<id>.json`, …) → bytes.
const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");

/// The file, inside `data_dir`.
pub const FILE: &str = "store.redb";

/// Where migrated fs entries are kept, inside `data_dir`.
pub const MIGRATED: &str = "fs-migrated";

/// The directories and files of the fs layout that hold store entries.
const FS_DIRS: [&str; 5] = ["certs", "sites", "ca", "acme", "tickets"];
const FS_FILES: [&str; 2] = ["master.check", "records-v2.sealed"];

/// Pages kept in memory: the working set is small (the edge keeps what it serves in its own
/// tables), so the file's pages need not stay resident.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

/// Asks the kernel to read the whole file into its page cache, on a thread of its own: a
/// start reads every entry, and redb reads one page at a time (after a reboot, a million
/// sites' start would wait for the disk at each page). A hint only: nothing fails without
/// it, and a file already cached costs nothing.
fn prefetch(path: &Path) {
    let path = path.to_owned();
    let _ = std::thread::Builder::new()
        .name("store-prefetch".into())
        .spawn(move || {
            if let Ok(file) = std::fs::File::open(&path) {
                let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::WillNeed);
            }
        });
}

#[derive(Debug)]
pub struct EmbeddedBackend {
    /// `None` once [`close`](Self::close)d.
    db: std::sync::RwLock<Option<Database>>,
    path: PathBuf,
}

impl EmbeddedBackend {
    /// Opens (creating, 0600) `data_dir/store.redb`, migrating an fs layout found beside it.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(FILE);
        prefetch(&path);
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .set_concurrency_mode(ConcurrencyMode::MultiWriter)
            .create(&path)
            .map_err(|e| unavailable(&path, "open", e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| StoreError::DataDir {
                path: path.clone(),
                source,
            },
        )?;
        let backend = Self {
            db: std::sync::RwLock::new(Some(db)),
            path,
        };
        backend.write(|_| Ok(()))?;
        backend.migrate_fs(data_dir)?;
        Ok(backend)
    }

    /// The database file.
    pub fn file(&self) -> &Path {
        &self.path
    }

    /// Closes the database cleanly (what a stopping edge does before it exits without
    /// freeing its tables); later operations fail as unavailable.
    pub fn close(&self) {
        let db = self
            .db
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        drop(db);
    }

    /// Runs `operation` (`what`: "read" or "write") on the database, unless closed.
    fn with_db<T>(
        &self,
        what: &str,
        operation: impl FnOnce(&Database) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        let db = self
            .db
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(db) = db.as_ref() else {
            return Err(StoreError::Unavailable {
                what: format!("{} ({what})", self.path.display()),
                reason: "the store is closed (the edge is stopping)".into(),
            });
        };
        operation(db).map_err(|e| unavailable(&self.path, what, e))
    }

    /// Runs `change` in one write transaction and commits it (durable when this returns).
    fn write<T>(
        &self,
        change: impl FnOnce(&mut redb::Table<'_, &str, &[u8]>) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        self.with_db("write", |db| {
            let txn = db.begin_write()?;
            let out = {
                let mut table = txn.open_table(ENTRIES)?;
                change(&mut table)?
            };
            txn.commit()?;
            Ok(out)
        })
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.with_db("read", |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(ENTRIES)?;
            Ok(table.get(key)?.map(|v| v.value().to_vec()))
        })
    }

    pub fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.write(|table| {
            table.insert(key, value)?;
            Ok(())
        })
    }

    /// Writes `value` unless `key` exists (in one transaction); whether it was written.
    pub fn create(&self, key: &str, value: &[u8]) -> Result<bool, StoreError> {
        self.write(|table| {
            if table.get(key)?.is_some() {
                return Ok(false);
            }
            table.insert(key, value)?;
            Ok(true)
        })
    }

    pub fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.write(|table| {
            table.remove(key)?;
            Ok(())
        })
    }

    /// Writes every entry in one transaction.
    pub fn put_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        self.write(|table| {
            for (key, bytes) in entries {
                table.insert(key.as_str(), bytes.as_slice())?;
            }
            Ok(())
        })
    }

    /// Every entry under `dir/` (at any depth), in key order, `batch` entries at a time
    /// (one read transaction: a consistent snapshot).
    ///
    /// `visit` takes each full batch and gives back an empty one to fill next (the same
    /// buffers, once the caller is done with an earlier batch).
    pub fn scan(
        &self,
        dir: &str,
        batch: usize,
        mut visit: impl FnMut(Batch) -> Batch,
    ) -> Result<(), StoreError> {
        let (start, end) = (format!("{dir}/"), format!("{dir}0"));
        self.with_db("read", |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(ENTRIES)?;
            let mut entries = Batch::default();
            for entry in table.range(start.as_str()..end.as_str())? {
                let (key, value) = entry?;
                entries.push(key.value(), value.value());
                if entries.len() == batch {
                    entries = visit(entries);
                }
            }
            visit(entries);
            Ok(())
        })
    }

    /// How many entries the file holds (all directories): an upper bound for a scan.
    pub fn entry_count(&self) -> Result<u64, StoreError> {
        self.with_db("read", |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(ENTRIES)?;
            Ok(table.len()?)
        })
    }

    /// Every entry under `dir/` (at any depth), in key order.
    pub fn list(&self, dir: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let start = format!("{dir}/");
        // '0' is the byte after '/': the range holds exactly the keys starting with `dir/`.
        let end = format!("{dir}0");
        self.with_db("read", |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(ENTRIES)?;
            let mut out = Vec::new();
            for entry in table.range(start.as_str()..end.as_str())? {
                let (key, value) = entry?;
                out.push((key.value().to_owned(), value.value().to_vec()));
            }
            Ok(out)
        })
    }

    /// Copies an fs layout in `data_dir` into the file (one transaction), then moves it
    /// under `fs-migrated/`. A crash before the move copies again next time (same keys, same
    /// bytes); a crash during the move leaves the rest to move next time.
    fn migrate_fs(&self, data_dir: &Path) -> Result<(), StoreError> {
        const CHUNK: usize = 4096;
        let mut files = Vec::new();
        for dir in FS_DIRS {
            collect_files(&data_dir.join(dir), &mut files)?;
        }
        files.extend(
            FS_FILES
                .iter()
                .map(|file| data_dir.join(file))
                .filter(|path| path.is_file()),
        );
        if files.is_empty() {
            return Ok(());
        }
        // In chunks, so a large directory is never all in memory.
        for chunk in files.chunks(CHUNK) {
            let entries = chunk
                .iter()
                .map(|path| read_entry(data_dir, path))
                .collect::<Result<Vec<_>, _>>()?;
            self.put_many(&entries)?;
        }
        let count = files.len();
        let kept = data_dir.join(MIGRATED);
        let moved = |source| StoreError::DataDir {
            path: kept.clone(),
            source,
        };
        std::fs::create_dir_all(&kept).map_err(moved)?;
        std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o700)).map_err(moved)?;
        for name in FS_DIRS.iter().chain(FS_FILES.iter()) {
            let from = data_dir.join(name);
            if from.exists() {
                let to = kept.join(name);
                if to.exists() {
                    // Left by an earlier, interrupted migration: this copy is the newer one.
                    let _ = std::fs::remove_dir_all(&to).or_else(|_| std::fs::remove_file(&to));
                }
                std::fs::rename(&from, &to).map_err(moved)?;
            }
        }
        tracing::info!(
            entries = count,
            file = %self.path.display(),
            kept = %kept.display(),
            "moved the store from one file per entry into one file; the old files are kept"
        );
        Ok(())
    }
}

/// Every regular file under `dir`, not temporaries, not entries set aside as corrupt.
fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(StoreError::Read {
                path: dir.to_owned(),
                source,
            });
        }
    };
    for entry in entries {
        let entry = entry.map_err(|source| StoreError::Read {
            path: dir.to_owned(),
            source,
        })?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.contains(".corrupt-") {
            continue;
        }
        if path.is_dir() {
            collect_files(&path, out)?;
        } else if path.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

fn read_entry(root: &Path, path: &Path) -> Result<(String, Vec<u8>), StoreError> {
    let read = |source| StoreError::Read {
        path: path.to_owned(),
        source,
    };
    let bytes = std::fs::read(path).map_err(read)?;
    let key = path
        .strip_prefix(root)
        .ok()
        .and_then(Path::to_str)
        .ok_or_else(|| read(std::io::Error::other("not a UTF-8 path under data_dir")))?;
    Ok((key.to_owned(), bytes))
}

fn unavailable(path: &Path, what: &str, e: impl Into<redb::Error>) -> StoreError {
    StoreError::Unavailable {
        what: format!("{} ({what})", path.display()),
        reason: e.into().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_list_by_directory_and_create_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = EmbeddedBackend::open(dir.path()).unwrap();
        assert_eq!(db.get("certs/a.json").unwrap(), None);
        db.put("certs/a.json", b"a").unwrap();
        db.put("certs/b.json", b"b").unwrap();
        db.put("certsx/c.json", b"not in certs/").unwrap();
        db.put("cert", b"nor this").unwrap();
        assert_eq!(db.get("certs/a.json").unwrap().as_deref(), Some(&b"a"[..]));
        let listed: Vec<String> = db.list("certs").unwrap().into_iter().map(|e| e.0).collect();
        assert_eq!(listed, ["certs/a.json", "certs/b.json"]);
        assert!(!db.create("certs/a.json", b"again").unwrap());
        assert!(db.create("certs/new.json", b"new").unwrap());
        assert_eq!(db.get("certs/a.json").unwrap().as_deref(), Some(&b"a"[..]));
        db.delete("certs/a.json").unwrap();
        db.delete("certs/absent.json").unwrap();
        assert_eq!(db.get("certs/a.json").unwrap(), None);
        let mode = std::fs::metadata(db.file()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Durable: a second handle (another process would be the same) sees the commits.
        drop(db);
        let again = EmbeddedBackend::open(dir.path()).unwrap();
        assert_eq!(
            again.get("certs/b.json").unwrap().as_deref(),
            Some(&b"b"[..])
        );
    }

    #[test]
    fn a_closed_store_refuses_operations_and_opens_again_whole() {
        let dir = tempfile::tempdir().unwrap();
        let db = EmbeddedBackend::open(dir.path()).unwrap();
        db.put("sites/a.json", b"a").unwrap();
        db.close();
        let refused = db.get("sites/a.json").unwrap_err();
        assert!(refused.is_unavailable(), "{refused}");
        assert!(refused.to_string().contains("closed"), "{refused}");
        assert!(db.put("sites/b.json", b"b").is_err());
        // The handle is still alive (the stopping edge never frees it): the file is not
        // held, another open finds what was committed.
        let again = EmbeddedBackend::open(dir.path()).unwrap();
        assert_eq!(
            again.get("sites/a.json").unwrap().as_deref(),
            Some(&b"a"[..])
        );
        assert_eq!(again.get("sites/b.json").unwrap(), None);
        drop(db);
    }

    #[test]
    fn an_fs_layout_is_copied_in_once_and_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("certs")).unwrap();
        std::fs::create_dir_all(root.join("ca")).unwrap();
        std::fs::write(root.join("certs/a.json"), b"record").unwrap();
        std::fs::write(root.join("certs/.a.json.1.tmp"), b"temporary").unwrap();
        std::fs::write(root.join("certs/b.json.corrupt-1"), b"set aside").unwrap();
        std::fs::write(root.join("ca/root.pem"), b"root").unwrap();
        std::fs::write(root.join("master.check"), b"check").unwrap();
        std::fs::write(root.join("master.key"), b"stays a file").unwrap();

        let db = EmbeddedBackend::open(root).unwrap();
        assert_eq!(
            db.get("certs/a.json").unwrap().as_deref(),
            Some(&b"record"[..])
        );
        assert_eq!(
            db.get("ca/root.pem").unwrap().as_deref(),
            Some(&b"root"[..])
        );
        assert_eq!(
            db.get("master.check").unwrap().as_deref(),
            Some(&b"check"[..])
        );
        assert_eq!(
            db.list("certs").unwrap().len(),
            1,
            "no temporaries or set-aside entries"
        );
        assert_eq!(
            db.get("master.key").unwrap(),
            None,
            "the master key never enters the store"
        );
        assert!(root.join("master.key").is_file());
        assert!(!root.join("certs").exists() && !root.join("master.check").exists());
        assert!(root.join(MIGRATED).join("certs/a.json").is_file());

        // A later open finds nothing left to move and keeps what was written since.
        db.put("certs/a.json", b"newer").unwrap();
        drop(db);
        let again = EmbeddedBackend::open(root).unwrap();
        assert_eq!(
            again.get("certs/a.json").unwrap().as_deref(),
            Some(&b"newer"[..])
        );
    }
}
