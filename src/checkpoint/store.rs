//! The crash-safe cursor store: a `redb` database under `data_dir`, keyed by
//! (source id, cursor key), values JSON. Each commit is one fsynced transaction, so a
//! crash leaves either the old or the new cursors, never a torn mix. Each cursor's
//! commit time is kept beside it (in the same transaction), for `checkpoints list`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::Value;

const CURSORS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("cursors");
/// When each cursor was last committed, in milliseconds since the Unix epoch. Stores
/// written before this table existed have no entry: the time is then unknown.
const COMMITTED_AT: TableDefinition<(&str, &str), u64> = TableDefinition::new("committed_at");

/// A source's committed cursors: cursor key → value. Sources with a single position
/// use one key; the file source keeps one key per file.
pub type Cursors = BTreeMap<String, Value>;

/// A committed cursor and when it was committed (unknown for older stores).
#[derive(Debug, Clone, PartialEq)]
pub struct CommittedCursor {
    pub value: Value,
    pub committed_at: Option<SystemTime>,
}

pub struct CheckpointStore {
    /// `None` only while being reopened after an I/O error.
    db: RwLock<Option<Database>>,
    path: PathBuf,
}

impl CheckpointStore {
    /// Opens (or creates) `data_dir/checkpoints.redb`. The directory is created with
    /// mode 0700 and the database file gets mode 0600: cursors reveal what was read.
    pub fn open(data_dir: &Path) -> Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .with_context(|| format!("cannot create data_dir {}", data_dir.display()))?;
        let path = data_dir.join("checkpoints.redb");
        let db = Self::open_file(&path)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict permissions of {}", path.display()))?;
        Ok(CheckpointStore {
            db: RwLock::new(Some(db)),
            path,
        })
    }

    fn open_file(path: &Path) -> Result<Database> {
        let db = Database::create(path).with_context(|| {
            format!(
                "cannot open checkpoint store {} (is another ferry running with this data_dir?)",
                path.display()
            )
        })?;
        let txn = db.begin_write()?;
        txn.open_table(CURSORS)?;
        txn.open_table(COMMITTED_AT)?;
        txn.commit()?;
        Ok(db)
    }

    /// Runs `f` on the open database.
    fn with_db<T>(&self, f: impl FnOnce(&Database) -> Result<T>) -> Result<T> {
        let guard = self
            .db
            .read()
            .map_err(|_| anyhow::anyhow!("checkpoint store lock poisoned"))?;
        let db = guard
            .as_ref()
            .context("checkpoint store is closed after an I/O error")?;
        f(db)
    }

    /// redb refuses every transaction after an I/O error until the database is
    /// reopened; reopening also recovers it from the last durable commit.
    fn reopen(&self) -> Result<()> {
        let mut guard = self
            .db
            .write()
            .map_err(|_| anyhow::anyhow!("checkpoint store lock poisoned"))?;
        *guard = None;
        *guard = Some(Self::open_file(&self.path)?);
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The committed cursors of one source (empty when it never committed).
    pub fn load(&self, source: &str) -> Result<Cursors> {
        self.with_db(|db| Self::read_source(db, source))
    }

    fn read_source(db: &Database, source: &str) -> Result<Cursors> {
        let txn = db.begin_read()?;
        let table = txn.open_table(CURSORS)?;
        let mut cursors = Cursors::new();
        for entry in table.range((source, "")..)? {
            let (key, value) = entry?;
            let (owner, name) = key.value();
            if owner != source {
                break;
            }
            let value: Value = serde_json::from_slice(value.value())
                .with_context(|| format!("corrupt cursor {source}/{name}"))?;
            cursors.insert(name.to_string(), value);
        }
        Ok(cursors)
    }

    /// Every source's cursors with their commit times, for `ferry checkpoints list`.
    pub fn load_all(&self) -> Result<BTreeMap<String, BTreeMap<String, CommittedCursor>>> {
        self.with_db(Self::read_all)
    }

    fn read_all(db: &Database) -> Result<BTreeMap<String, BTreeMap<String, CommittedCursor>>> {
        let txn = db.begin_read()?;
        let table = txn.open_table(CURSORS)?;
        let times = txn.open_table(COMMITTED_AT)?;
        let mut all: BTreeMap<String, BTreeMap<String, CommittedCursor>> = BTreeMap::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            let (owner, name) = key.value();
            let value: Value = serde_json::from_slice(value.value())
                .with_context(|| format!("corrupt cursor {owner}/{name}"))?;
            let committed_at = times
                .get((owner, name))?
                .map(|millis| SystemTime::UNIX_EPOCH + Duration::from_millis(millis.value()));
            all.entry(owner.to_string()).or_default().insert(
                name.to_string(),
                CommittedCursor {
                    value,
                    committed_at,
                },
            );
        }
        Ok(all)
    }

    /// Applies `updates` (None removes the key) in one durable transaction.
    /// After a failure the database is reopened, so the next commit can succeed once
    /// the cause (a full disk, say) is gone.
    pub fn commit(&self, source: &str, updates: &BTreeMap<String, Option<Value>>) -> Result<()> {
        let result = self.with_db(|db| Self::write(db, source, updates));
        if result.is_err()
            && let Err(error) = self.reopen()
        {
            tracing::debug!("cannot reopen the checkpoint store yet: {error:#}");
        }
        result
    }

    fn write(db: &Database, source: &str, updates: &BTreeMap<String, Option<Value>>) -> Result<()> {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let txn = db.begin_write()?;
        {
            let mut table = txn.open_table(CURSORS)?;
            let mut times = txn.open_table(COMMITTED_AT)?;
            for (name, value) in updates {
                let key = (source, name.as_str());
                match value {
                    Some(value) => {
                        let bytes = serde_json::to_vec(value)?;
                        table.insert(key, bytes.as_slice())?;
                        times.insert(key, now)?;
                    }
                    None => {
                        table.remove(key)?;
                        times.remove(key)?;
                    }
                }
            }
        }
        txn.commit()
            .with_context(|| format!("cannot commit checkpoint of source {source}"))?;
        Ok(())
    }

    /// Forgets every cursor of `source`; returns how many were removed.
    pub fn reset(&self, source: &str) -> Result<usize> {
        let names: Vec<String> = self.load(source)?.into_keys().collect();
        let updates = names.iter().map(|n| (n.clone(), None)).collect();
        self.commit(source, &updates)?;
        Ok(names.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn commits_survive_reopen_and_stay_per_source() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = CheckpointStore::open(dir.path()).unwrap();
            let mut updates = BTreeMap::new();
            updates.insert("a".to_string(), Some(json!({"offset": 10})));
            updates.insert("b".to_string(), Some(json!(5)));
            store.commit("s1", &updates).unwrap();
            let mut other = BTreeMap::new();
            other.insert("a".to_string(), Some(json!(99)));
            store.commit("s10", &other).unwrap();
            let mut removal = BTreeMap::new();
            removal.insert("b".to_string(), None);
            store.commit("s1", &removal).unwrap();
        }
        let store = CheckpointStore::open(dir.path()).unwrap();
        let s1 = store.load("s1").unwrap();
        assert_eq!(s1.len(), 1);
        assert_eq!(s1["a"], json!({"offset": 10}));
        assert_eq!(store.load("s10").unwrap()["a"], json!(99));
        assert!(store.load("s").unwrap().is_empty());
        let all = store.load_all().unwrap();
        assert_eq!(all.len(), 2);
        let committed = all["s1"]["a"].committed_at.expect("a commit time");
        let age = SystemTime::now().duration_since(committed).unwrap();
        assert!(age < Duration::from_secs(3600), "{age:?}");
        let mode = fs::metadata(store.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(store.reset("s1").unwrap(), 1);
        assert!(store.load("s1").unwrap().is_empty());
    }
}
