//! The default store: every key in one table of a redb database, a single file on disk.
//! Each `apply` batch is one write transaction, durable when it commits; redb's file lock
//! keeps a second process (or a second open in this one) away from the same file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, DatabaseError, ReadableTable, StorageError, TableDefinition, TableError};

use super::{Store, StoreError, Write};

/// The one table: key -> value.
const TABLE: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("mesokit");

/// A [`Store`] in one redb database file.
#[derive(Clone)]
pub struct FileStore {
    db: Arc<Database>,
    path: Arc<PathBuf>,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("path", &self.path)
            .finish()
    }
}

impl FileStore {
    /// Opens the database at `path`, creating it (but not its directory) when missing.
    ///
    /// Fails with [`StoreError::Corrupt`] when the file exists but is not a redb database, and
    /// with [`StoreError::Unavailable`] when another process (or another `FileStore` in this
    /// one) has it open.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let db = Database::create(&path).map_err(|e| open_error(&path, e))?;
        Ok(Self {
            db: Arc::new(db),
            path: Arc::new(path),
        })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn load_blocking(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err("read", e))?;
        let table = match txn.open_table(TABLE) {
            Ok(t) => t,
            // Nothing was ever written.
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(self.err("read", e)),
        };
        let mut out = Vec::new();
        for item in table.iter().map_err(|e| self.storage_err("read", e))? {
            let (k, v) = item.map_err(|e| self.storage_err("read", e))?;
            out.push((k.value().to_owned(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn apply_blocking(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.err("write", e))?;
        {
            let mut table = txn.open_table(TABLE).map_err(|e| self.err("write", e))?;
            for w in &writes {
                match w {
                    Write::Put { key, value } => {
                        table
                            .insert(key.as_str(), value.as_slice())
                            .map_err(|e| self.storage_err("write", e))?;
                    }
                    Write::Delete { key } => {
                        table
                            .remove(key.as_str())
                            .map_err(|e| self.storage_err("write", e))?;
                    }
                }
            }
        }
        txn.commit().map_err(|e| self.err("commit", e))
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Other(format!("{what} {}: {e}", self.path.display()))
    }

    fn storage_err(&self, what: &str, e: StorageError) -> StoreError {
        match e {
            StorageError::Corrupted(msg) => StoreError::Corrupt(format!(
                "{}: {msg} (is it a mesokit store?)",
                self.path.display()
            )),
            StorageError::Io(io) => {
                StoreError::Unavailable(format!("{what} {}: {io}", self.path.display()))
            }
            other => self.err(what, other),
        }
    }
}

fn open_error(path: &Path, e: DatabaseError) -> StoreError {
    let p = path.display();
    match e {
        DatabaseError::DatabaseAlreadyOpen => StoreError::Unavailable(format!(
            "{p} is already open in another process (or another store in this one); \
             only one scheduler may use a file store at a time"
        )),
        DatabaseError::UpgradeRequired(v) => StoreError::Corrupt(format!(
            "{p}: written by an incompatible redb file format (version {v})"
        )),
        DatabaseError::Storage(StorageError::Corrupted(msg)) => StoreError::Corrupt(format!(
            "{p} is not a mesokit store (not a redb database, or damaged): {msg}"
        )),
        // redb reports a bad header (wrong magic number, truncated file) as invalid data.
        DatabaseError::Storage(StorageError::Io(io))
            if matches!(
                io.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            StoreError::Corrupt(format!(
                "{p} is not a mesokit store (not a redb database, or damaged): {io}"
            ))
        }
        DatabaseError::Storage(StorageError::Io(io)) => {
            StoreError::Unavailable(format!("cannot open {p}: {io}"))
        }
        other => StoreError::Other(format!("cannot open {p}: {other}")),
    }
}

impl Store for FileStore {
    async fn load(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.load_blocking())
            .await
            .map_err(|e| StoreError::Other(format!("store reader task failed: {e}")))?
    }

    async fn apply(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.apply_blocking(writes))
            .await
            .map_err(|e| StoreError::Other(format!("store writer task failed: {e}")))?
    }
}
