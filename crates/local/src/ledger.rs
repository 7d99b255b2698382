//! SQLite ledger: one row per raw object (which batch claimed it), one per batch (state, lease,
//! output, counts), one per quarantined object. It is both sides of the protocol's ledger ports —
//! [`ClaimLedger`] (open, claim, seal under a lease, as the DynamoDB ledger) and [`CommitLedger`]
//! — with transactions making each step atomic. A batch that was claimed but never committed is
//! found by [`SqliteLedger::pending`] and run again under the same id.
//!
//! Objects are keyed by key and etag; the scope of the port (the bucket) is not stored, as one
//! ledger belongs to one INPUT.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use flowmerge_protocol::batch::{Batch, BatchId, ObjectRef, SourceKind};
use flowmerge_protocol::ports::{
    BatchRecord, BatchState, Claim, ClaimLedger, CommitLedger, LedgerError, RollupLedger,
    RollupRecord, RollupState,
};
use flowmerge_protocol::report::{BatchReport, Quarantined};
use flowmerge_protocol::window::Window;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ledger {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("ledger task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("ledger {0}: lock poisoned")]
    Poisoned(String),
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS objects (
    key           TEXT NOT NULL,
    etag          TEXT NOT NULL,
    size          INTEGER NOT NULL,
    last_modified INTEGER NOT NULL,
    batch_id      TEXT NOT NULL,
    PRIMARY KEY (key, etag)
);
CREATE INDEX IF NOT EXISTS objects_by_batch ON objects (batch_id);
CREATE TABLE IF NOT EXISTS batches (
    batch_id      TEXT PRIMARY KEY,
    window_start  INTEGER NOT NULL,
    window_size   INTEGER NOT NULL,
    state         TEXT NOT NULL
                  CHECK (state IN ('open', 'sealed', 'queued', 'committed', 'empty')),
    lease_owner   TEXT NOT NULL DEFAULT '',
    lease_until   INTEGER NOT NULL DEFAULT 0,
    manifest      TEXT NOT NULL DEFAULT '',
    source        TEXT NOT NULL DEFAULT 'vpcflow',
    output_key    TEXT,
    records_in    INTEGER,
    rows_out      INTEGER,
    bytes_in      INTEGER,
    bytes_out     INTEGER,
    claimed_at    INTEGER NOT NULL,
    committed_at  INTEGER
);
CREATE TABLE IF NOT EXISTS quarantine (
    key       TEXT NOT NULL,
    etag      TEXT NOT NULL,
    batch_id  TEXT NOT NULL,
    reason    TEXT NOT NULL,
    at        INTEGER NOT NULL,
    PRIMARY KEY (key, etag)
);
CREATE TABLE IF NOT EXISTS rollups (
    partition     TEXT PRIMARY KEY,
    lease_owner   TEXT NOT NULL DEFAULT '',
    lease_until   INTEGER NOT NULL DEFAULT 0,
    rollup_id     TEXT,
    state         TEXT CHECK (state IN ('writing', 'committed', 'done', 'aborted')),
    source        TEXT,
    outputs       TEXT,
    replaced      TEXT,
    inputs        INTEGER,
    rows_out      INTEGER,
    updated_at    INTEGER
);
CREATE TABLE IF NOT EXISTS digests (
    key         TEXT PRIMARY KEY,
    store_etag  TEXT NOT NULL,
    size        INTEGER NOT NULL,
    digest      TEXT NOT NULL
);
";

/// Columns added after the first release, for ledgers created before them.
const MIGRATIONS: &[(&str, &str, &str)] = &[
    (
        "quarantine",
        "read_options",
        "ALTER TABLE quarantine ADD COLUMN read_options TEXT NOT NULL DEFAULT ''",
    ),
    (
        "batches",
        "source",
        "ALTER TABLE batches ADD COLUMN source TEXT NOT NULL DEFAULT 'vpcflow'",
    ),
];

/// Ledgers before the claim protocol had batches `claimed` (now: `sealed`) or `committed`, and
/// no lease: their table is rebuilt with the new states and columns.
const REBUILD_BATCHES: &str = "
CREATE TABLE batches_v2 (
    batch_id      TEXT PRIMARY KEY,
    window_start  INTEGER NOT NULL,
    window_size   INTEGER NOT NULL,
    state         TEXT NOT NULL
                  CHECK (state IN ('open', 'sealed', 'queued', 'committed', 'empty')),
    lease_owner   TEXT NOT NULL DEFAULT '',
    lease_until   INTEGER NOT NULL DEFAULT 0,
    manifest      TEXT NOT NULL DEFAULT '',
    output_key    TEXT,
    records_in    INTEGER,
    rows_out      INTEGER,
    bytes_in      INTEGER,
    bytes_out     INTEGER,
    claimed_at    INTEGER NOT NULL,
    committed_at  INTEGER
);
INSERT INTO batches_v2 (batch_id, window_start, window_size, state, output_key, records_in,
                        rows_out, bytes_in, bytes_out, claimed_at, committed_at)
  SELECT batch_id, window_start, window_size,
         CASE state WHEN 'claimed' THEN 'sealed' ELSE state END,
         output_key, records_in, rows_out, bytes_in, bytes_out, claimed_at, committed_at
  FROM batches;
DROP TABLE batches;
ALTER TABLE batches_v2 RENAME TO batches;
";

/// Which quarantined objects to hand back for another try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Every quarantined object (`compact --retry-quarantined`).
    All,
    /// Those quarantined while reading with other options than the ledger's current ones.
    OptionsChanged,
}

/// The ledger of `flowmerge compact`, in one SQLite file.
#[derive(Clone)]
pub struct SqliteLedger {
    path: String,
    conn: Arc<Mutex<Connection>>,
    /// The options objects are read with, recorded beside each quarantined object.
    read_options: String,
}

impl SqliteLedger {
    /// Opens (creating if needed) the ledger at `path`.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let name = path.display().to_string();
        let wrap = |source| Error::Sqlite {
            path: name.clone(),
            source,
        };
        let conn = Connection::open(path).map_err(wrap)?;
        conn.execute_batch(SCHEMA).map_err(wrap)?;
        let batches_sql: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'batches'",
                [],
                |r| r.get(0),
            )
            .map_err(wrap)?;
        if batches_sql.contains("'claimed'") {
            conn.execute_batch(&format!("BEGIN; {REBUILD_BATCHES} COMMIT;"))
                .map_err(wrap)?;
        }
        for (table, column, alter) in MIGRATIONS {
            let exists: bool = conn
                .query_row(
                    &format!("SELECT count(*) FROM pragma_table_info('{table}') WHERE name = ?1"),
                    [column],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(wrap)?
                > 0;
            if !exists {
                conn.execute_batch(alter).map_err(wrap)?;
            }
        }
        Ok(Self {
            path: name,
            conn: Arc::new(Mutex::new(conn)),
            read_options: String::new(),
        })
    }

    /// The options this run reads objects with (e.g. the `--format` field list), as a stable
    /// string: quarantined objects remember it, so that [`Retry::OptionsChanged`] finds those a
    /// change of options may now read.
    pub fn reading_with(mut self, read_options: impl Into<String>) -> Self {
        self.read_options = read_options.into();
        self
    }

    /// Hands quarantined objects back: their claim and quarantine record are removed, so the next
    /// listing finds them unclaimed and batches them again (into a new file: none of their
    /// records reached the output). Returns how many.
    pub async fn release_quarantined(&self, which: Retry) -> Result<u64, Error> {
        let options = self.read_options.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let filter = match which {
                Retry::All => "1 = 1",
                Retry::OptionsChanged => "read_options <> ?1",
            };
            let params: &[&dyn rusqlite::ToSql] = match which {
                Retry::All => &[],
                Retry::OptionsChanged => &[&options],
            };
            tx.execute(
                &format!(
                    "DELETE FROM objects WHERE (key, etag) IN
                       (SELECT key, etag FROM quarantine WHERE {filter})"
                ),
                params,
            )?;
            let n = tx.execute(&format!("DELETE FROM quarantine WHERE {filter}"), params)?;
            // A batch whose objects were all quarantined wrote no file; forget it, or retrying
            // the same objects (the same batch id) would find it committed and do nothing.
            tx.execute(
                "DELETE FROM batches WHERE state IN ('committed', 'empty')
                   AND batch_id NOT IN (SELECT batch_id FROM objects)",
                [],
            )?;
            tx.commit()?;
            Ok(n as u64)
        })
        .await
    }

    /// How many objects are quarantined now.
    pub async fn quarantined_count(&self) -> Result<u64, Error> {
        self.with(|c| {
            c.query_row("SELECT count(*) FROM quarantine", [], |r| {
                r.get::<_, i64>(0)
            })
        })
        .await
        .map(|n| n as u64)
    }

    /// Content digests remembered for local files, by key: `(store etag, size, digest)`. A file
    /// whose store etag (inode, mtime, size) is unchanged need not be read again to know its digest.
    pub async fn digests(
        &self,
    ) -> Result<std::collections::HashMap<String, (String, u64, String)>, Error> {
        self.with(|c| {
            let mut st = c.prepare("SELECT key, store_etag, size, digest FROM digests")?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    (r.get(1)?, r.get::<_, i64>(2)? as u64, r.get(3)?),
                ))
            })?;
            rows.collect()
        })
        .await
    }

    /// Remembers content digests of local files (see [`SqliteLedger::digests`]).
    pub async fn remember_digests(
        &self,
        rows: Vec<(String, String, u64, String)>,
    ) -> Result<(), Error> {
        if rows.is_empty() {
            return Ok(());
        }
        self.with(move |c| {
            let tx = c.transaction()?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT OR REPLACE INTO digests (key, store_etag, size, digest) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for (key, etag, size, digest) in &rows {
                    st.execute(params![key, etag, *size as i64, digest])?;
                }
            }
            tx.commit()
        })
        .await
    }

    /// Runs `f` on the connection off the async threads.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, Error> {
        let conn = Arc::clone(&self.conn);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| Error::Poisoned(path.clone()))?;
            f(&mut guard).map_err(|source| Error::Sqlite { path, source })
        })
        .await?
    }

    /// Quarantined objects with their reasons, in key order.
    pub async fn quarantined(&self) -> Result<Vec<(String, String)>, Error> {
        self.with(|c| {
            let mut st = c.prepare("SELECT key, reason FROM quarantine ORDER BY key")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
        .await
    }
}

fn etag_of(o: &ObjectRef) -> &str {
    o.etag.as_deref().unwrap_or("")
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl SqliteLedger {
    /// The objects of `candidates` (by key and etag) that no batch has claimed yet.
    pub async fn unclaimed(
        &self,
        candidates: Vec<ObjectRef>,
    ) -> Result<Vec<ObjectRef>, LedgerError> {
        let owners = self.claims("", &candidates).await?;
        Ok(candidates
            .into_iter()
            .zip(owners)
            .filter_map(|(o, by)| by.is_none().then_some(o))
            .collect())
    }

    /// Work a crash left behind, to run again under the same ids: batches sealed or queued but
    /// not committed, with the objects they own. Open batches whose claimer's lease has run out
    /// are sealed first (or marked empty), as any claimer of the protocol would.
    pub async fn pending(&self) -> Result<Vec<Batch>, LedgerError> {
        let abandoned: Vec<String> = self
            .with(|c| {
                let mut st = c.prepare(
                    "SELECT batch_id FROM batches WHERE state = 'open' AND lease_until < ?1",
                )?;
                st.query_map([now()], |r| r.get(0))?.collect()
            })
            .await?;
        for id in abandoned {
            self.seal_abandoned(&BatchId(id)).await?;
        }
        let batches: Vec<(String, i64, i64, String, Vec<ObjectRef>)> = self
            .with(|c| {
                let mut st = c.prepare(
                    "SELECT batch_id, window_start, window_size, source FROM batches
                     WHERE state IN ('sealed', 'queued') ORDER BY window_start, batch_id",
                )?;
                let heads: Vec<(String, i64, i64, String)> = st
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                let mut objs = c.prepare(
                    "SELECT key, etag, size, last_modified FROM objects WHERE batch_id = ?1 ORDER BY key",
                )?;
                let mut out = Vec::new();
                for (id, start, size, source) in heads {
                    let objects = objs
                        .query_map([&id], |r| {
                            let etag: String = r.get(1)?;
                            Ok(ObjectRef {
                                key: r.get(0)?,
                                etag: (!etag.is_empty()).then_some(etag),
                                size: r.get::<_, i64>(2)? as u64,
                                last_modified: r.get(3)?,
                            })
                        })?
                        .collect::<rusqlite::Result<_>>()?;
                    out.push((id, start, size, source, objects));
                }
                Ok(out)
            })
            .await?;
        let batches = batches
            .into_iter()
            .map(|(id, start, size, source, objects)| {
                Ok(Batch {
                    source: source_of(&id, &source)?,
                    id: BatchId(id),
                    window: Window { start, size },
                    objects,
                })
            })
            .collect::<Result<Vec<Batch>, LedgerError>>()?;
        let mut pending = Vec::with_capacity(batches.len());
        for b in batches {
            match b.objects.is_empty() {
                true => {
                    self.mark_empty(&b.id).await?;
                }
                false => pending.push(b),
            }
        }
        Ok(pending)
    }

    /// Moves a batch from one of `from` to `to` if `condition` (SQL over its row, whose `?2`,
    /// `?3`… are `args`) holds; false if it did not.
    async fn transition(
        &self,
        id: &BatchId,
        from: &'static [BatchState],
        to: BatchState,
        condition: &'static str,
        args: Vec<Value>,
    ) -> Result<bool, LedgerError> {
        let states: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        let sql = format!(
            "UPDATE batches SET state = '{}' WHERE batch_id = ?1 AND state IN ('{}') AND ({condition})",
            to.as_str(),
            states.join("', '")
        );
        let mut values = vec![Value::Text(id.0.clone())];
        values.extend(args);
        Ok(self
            .with(move |c| c.execute(&sql, params_from_iter(values)).map(|n| n > 0))
            .await?)
    }
}

/// A batch row: id, state, lease owner and end, manifest, window start and size, source.
type BatchRow = (String, String, String, i64, String, i64, i64, String);

fn record_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<BatchRow> {
    BatchRow::try_from(r)
}

fn source_of(id: &str, s: &str) -> Result<SourceKind, LedgerError> {
    SourceKind::parse(s).ok_or_else(|| format!("batch {id}: unknown source {s:?}").into())
}

/// The SQLite adapter of the claim side; `flowmerge_core::conformance` holds the expectations it
/// shares with the DynamoDB ledger.
#[async_trait]
impl ClaimLedger for SqliteLedger {
    async fn open_batch(&self, rec: &BatchRecord) -> Result<Option<BatchRecord>, LedgerError> {
        let r = rec.clone();
        let inserted = self
            .with(move |c| {
                c.execute(
                    "INSERT OR IGNORE INTO batches (batch_id, window_start, window_size, state,
                       lease_owner, lease_until, manifest, source, claimed_at)
                     VALUES (?1, ?2, ?3, 'open', ?4, ?5, ?6, ?7, ?8)",
                    params![
                        r.id.0,
                        r.window.start,
                        r.window.size,
                        r.owner,
                        r.lease_until,
                        r.manifest,
                        r.source.as_str(),
                        now()
                    ],
                )
            })
            .await?;
        match inserted {
            1 => Ok(None),
            _ => self.batch(&rec.id).await,
        }
    }

    async fn batch(&self, id: &BatchId) -> Result<Option<BatchRecord>, LedgerError> {
        let key = id.0.clone();
        let row = self
            .with(move |c| {
                c.query_row(
                    "SELECT batch_id, state, lease_owner, lease_until, manifest, window_start,
                       window_size, source
                     FROM batches WHERE batch_id = ?1",
                    [key],
                    record_of,
                )
                .optional()
            })
            .await?;
        let Some((id, state, owner, lease_until, manifest, start, size, source)) = row else {
            return Ok(None);
        };
        let source = source_of(&id, &source)?;
        let state = BatchState::parse(&state)
            .ok_or_else(|| format!("batch {id}: unknown state {state:?}"))?;
        Ok(Some(BatchRecord {
            id: BatchId(id),
            state,
            owner,
            lease_until,
            manifest,
            window: Window { start, size },
            source,
        }))
    }

    async fn claim_all(
        &self,
        _scope: &str,
        objects: &[ObjectRef],
        batch: &BatchId,
        owner: &str,
    ) -> Result<Vec<Claim>, LedgerError> {
        let (objects, batch, owner) = (objects.to_vec(), batch.clone(), owner.to_owned());
        Ok(self
            .with(move |c| {
                let tx = c.transaction()?;
                let open = tx.query_row(
                    "SELECT count(*) FROM batches
                     WHERE batch_id = ?1 AND state = 'open' AND lease_owner = ?2",
                    params![batch.0, owner],
                    |r| r.get::<_, i64>(0),
                )? > 0;
                let mut out = Vec::with_capacity(objects.len());
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT OR IGNORE INTO objects (key, etag, size, last_modified, batch_id)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?;
                    let mut by = tx.prepare_cached(
                        "SELECT batch_id FROM objects WHERE key = ?1 AND etag = ?2",
                    )?;
                    for o in &objects {
                        if open {
                            insert.execute(params![
                                o.key,
                                etag_of(o),
                                o.size as i64,
                                o.last_modified,
                                batch.0
                            ])?;
                        }
                        let owner: Option<String> = by
                            .query_row(params![o.key, etag_of(o)], |r| r.get(0))
                            .optional()?;
                        out.push(match owner {
                            Some(b) if open && b == batch.0 => Claim::Mine,
                            Some(b) => Claim::Taken(BatchId(b)),
                            None => Claim::Closed,
                        });
                    }
                }
                tx.commit()?;
                Ok(out)
            })
            .await?)
    }

    async fn claims(
        &self,
        _scope: &str,
        objects: &[ObjectRef],
    ) -> Result<Vec<Option<BatchId>>, LedgerError> {
        let objects = objects.to_vec();
        Ok(self
            .with(move |c| {
                let mut by =
                    c.prepare_cached("SELECT batch_id FROM objects WHERE key = ?1 AND etag = ?2")?;
                objects
                    .iter()
                    .map(|o| {
                        by.query_row(params![o.key, etag_of(o)], |r| r.get(0))
                            .optional()
                            .map(|b| b.map(BatchId))
                    })
                    .collect()
            })
            .await?)
    }

    async fn seal(&self, id: &BatchId, owner: &str) -> Result<bool, LedgerError> {
        self.transition(
            id,
            &[BatchState::Open],
            BatchState::Sealed,
            "lease_owner = ?2",
            vec![Value::Text(owner.to_owned())],
        )
        .await
    }

    async fn seal_abandoned(&self, id: &BatchId) -> Result<bool, LedgerError> {
        self.transition(
            id,
            &[BatchState::Open],
            BatchState::Sealed,
            "lease_until < ?2",
            vec![Value::Integer(now())],
        )
        .await
    }

    async fn take_over(
        &self,
        id: &BatchId,
        owner: &str,
        lease_until: i64,
    ) -> Result<bool, LedgerError> {
        let (id, owner) = (id.0.clone(), owner.to_owned());
        Ok(self
            .with(move |c| {
                c.execute(
                    "UPDATE batches SET lease_owner = ?2, lease_until = ?3
                     WHERE batch_id = ?1 AND state = 'open' AND lease_until < ?4",
                    params![id, owner, lease_until, now()],
                )
                .map(|n| n > 0)
            })
            .await?)
    }

    async fn mark_queued(&self, id: &BatchId) -> Result<bool, LedgerError> {
        self.transition(
            id,
            &[BatchState::Sealed],
            BatchState::Queued,
            "1 = 1",
            vec![],
        )
        .await
    }

    async fn mark_empty(&self, id: &BatchId) -> Result<bool, LedgerError> {
        self.transition(
            id,
            &[BatchState::Sealed],
            BatchState::Empty,
            "1 = 1",
            vec![],
        )
        .await
    }
}

/// File names of a rollup record, one per line (our names have no line breaks).
fn names_of(text: Option<String>) -> Vec<String> {
    text.unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

type RollupRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

/// The rollup side: one row per partition, its lease and its current rollup.
#[async_trait]
impl RollupLedger for SqliteLedger {
    async fn lease_partition(
        &self,
        partition: &str,
        owner: &str,
        lease_until: i64,
        now: i64,
    ) -> Result<Option<Option<RollupRecord>>, LedgerError> {
        let (p, o) = (partition.to_owned(), owner.to_owned());
        let row: Option<RollupRow> = self
            .with(move |c| {
                let tx = c.transaction()?;
                tx.execute(
                    "INSERT OR IGNORE INTO rollups (partition) VALUES (?1)",
                    [&p],
                )?;
                let leased = tx.execute(
                    "UPDATE rollups SET lease_owner = ?2, lease_until = ?3
                     WHERE partition = ?1 AND (lease_owner IN ('', ?2) OR lease_until <= ?4)",
                    params![p, o, lease_until, now],
                )?;
                let row = match leased {
                    0 => None,
                    _ => Some(tx.query_row(
                        "SELECT partition, rollup_id, state, source, outputs, replaced, inputs,
                           rows_out FROM rollups WHERE partition = ?1",
                        [&p],
                        |r| RollupRow::try_from(r),
                    )?),
                };
                tx.commit()?;
                Ok(row)
            })
            .await?;
        let Some((partition, id, state, source, outputs, replaced, inputs, rows)) = row else {
            return Ok(None);
        };
        let (Some(id), Some(state)) = (id, state) else {
            return Ok(Some(None));
        };
        let state = RollupState::parse(&state)
            .ok_or_else(|| format!("rollup of {partition}: unknown state {state:?}"))?;
        let source = source_of(&id, source.as_deref().unwrap_or("vpcflow"))?;
        Ok(Some(Some(RollupRecord {
            partition,
            id,
            state,
            source,
            outputs: names_of(outputs),
            replaced: names_of(replaced),
            inputs: inputs.unwrap_or(0) as u64,
            rows: rows.unwrap_or(0) as u64,
        })))
    }

    async fn put_rollup(
        &self,
        rec: &RollupRecord,
        owner: &str,
        now: i64,
    ) -> Result<bool, LedgerError> {
        let (r, o) = (rec.clone(), owner.to_owned());
        let changed = self
            .with(move |c| {
                c.execute(
                    "UPDATE rollups SET rollup_id = ?3, state = ?4, source = ?5, outputs = ?6,
                       replaced = ?7, inputs = ?8, rows_out = ?9, updated_at = ?10
                     WHERE partition = ?1 AND lease_owner = ?2 AND lease_until > ?10",
                    params![
                        r.partition,
                        o,
                        r.id,
                        r.state.as_str(),
                        r.source.as_str(),
                        r.outputs.join("\n"),
                        r.replaced.join("\n"),
                        r.inputs as i64,
                        r.rows as i64,
                        now
                    ],
                )
            })
            .await?;
        Ok(changed == 1)
    }

    async fn release_partition(&self, partition: &str, owner: &str) -> Result<(), LedgerError> {
        let (p, o) = (partition.to_owned(), owner.to_owned());
        self.with(move |c| {
            c.execute(
                "UPDATE rollups SET lease_owner = '', lease_until = 0
                 WHERE partition = ?1 AND lease_owner = ?2",
                params![p, o],
            )
        })
        .await?;
        Ok(())
    }
}

#[async_trait]
impl CommitLedger for SqliteLedger {
    async fn is_committed(&self, batch: &BatchId) -> Result<bool, LedgerError> {
        Ok(self.batch(batch).await?.map(|r| r.state) == Some(BatchState::Committed))
    }

    async fn quarantine(&self, batch: &Batch, objects: &[Quarantined]) -> Result<(), LedgerError> {
        let (id, objects) = (batch.id.0.clone(), objects.to_vec());
        let read_options = self.read_options.clone();
        Ok(self
            .with(move |c| {
                let tx = c.transaction()?;
                for q in &objects {
                    tx.execute(
                        "INSERT OR REPLACE INTO quarantine (key, etag, batch_id, reason, at, read_options)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![q.object.key, etag_of(&q.object), id, q.reason, now(), read_options],
                    )?;
                }
                tx.commit()
            })
            .await?)
    }

    async fn commit_batch(&self, report: &BatchReport) -> Result<(), LedgerError> {
        let report = report.clone();
        let Some(id) = report.batch_id.clone() else {
            return Err("commit of a report without a batch id".into());
        };
        Ok(self
            .with(move |c| {
                c.execute(
                    "UPDATE batches SET state = 'committed', output_key = ?2, records_in = ?3,
                       rows_out = ?4, bytes_in = ?5, bytes_out = ?6, committed_at = ?7
                     WHERE batch_id = ?1 AND state IN ('sealed', 'queued')",
                    params![
                        id.0,
                        report.output_keys.join("\n"),
                        report.records_in as i64,
                        report.rows_out as i64,
                        report.bytes_in as i64,
                        report.bytes_out as i64,
                        now()
                    ],
                )?;
                Ok(())
            })
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowmerge_protocol::claim::claim_batch;

    /// Claims a batch as `flowmerge compact` does (no lease to wait for after a crash); returns
    /// it restricted to the objects it owns.
    async fn claim(l: &SqliteLedger, b: &Batch) -> Batch {
        let done = claim_batch(l, "", b, "test", now() - 1, String::new())
            .await
            .unwrap();
        Batch {
            objects: done.owned(b),
            ..b.clone()
        }
    }

    async fn state(l: &SqliteLedger, id: &BatchId) -> Option<BatchState> {
        l.batch(id).await.unwrap().map(|r| r.state)
    }

    fn obj(key: &str) -> ObjectRef {
        ObjectRef {
            key: key.into(),
            size: 10,
            etag: Some(format!("e-{key}")),
            last_modified: 0,
        }
    }

    #[tokio::test]
    async fn claim_is_conditional_and_commit_clears_pending() {
        let dir = tempfile::tempdir().unwrap();
        let l = SqliteLedger::open(&dir.path().join("l.sqlite")).unwrap();
        let w = Window::containing(0, 300);
        let a = Batch::new("", w, vec![obj("a"), obj("b")]);
        let b = Batch::new("", w, vec![obj("b"), obj("c")]);
        assert_eq!(claim(&l, &a).await.objects.len(), 2);
        assert_eq!(
            claim(&l, &a).await.objects.len(),
            0,
            "sealed: claiming again sends nothing twice"
        );
        let got = claim(&l, &b).await;
        assert_eq!(got.objects, vec![obj("c")], "b stays with batch a");
        let unclaimed = l.unclaimed(vec![obj("a"), obj("d")]).await.unwrap();
        assert_eq!(unclaimed, vec![obj("d")]);
        assert_eq!(l.pending().await.unwrap().len(), 2);
        assert_eq!(state(&l, &a.id).await, Some(BatchState::Sealed));
        let report = BatchReport {
            batch_id: Some(a.id.clone()),
            ..Default::default()
        };
        l.commit_batch(&report).await.unwrap();
        assert_eq!(state(&l, &a.id).await, Some(BatchState::Committed));
        let pending = l.pending().await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].id, b.id);
        assert_eq!(pending[0].objects, vec![obj("c")]);
    }

    #[tokio::test]
    async fn passes_the_commit_ledger_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let l = SqliteLedger::open(&dir.path().join("l.sqlite")).unwrap();
        let claimer = l.clone();
        flowmerge_core::conformance::commit_ledger_conformance(&l, "sqlite", |b| {
            let claimer = claimer.clone();
            async move { claim(&claimer, &b).await }
        })
        .await;
        assert_eq!(l.quarantined_count().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn quarantined_objects_are_released_when_asked_or_when_options_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        let l = SqliteLedger::open(&path).unwrap();
        let b = claim(
            &l,
            &Batch::new("", Window::containing(0, 300), vec![obj("a"), obj("b")]),
        )
        .await;
        let q = |o: ObjectRef| Quarantined {
            object: o,
            reason: "bad".into(),
        };
        l.quarantine(&b, &[q(obj("a"))]).await.unwrap();
        assert_eq!(l.unclaimed(vec![obj("a")]).await.unwrap(), vec![]);
        // Same options: nothing is released; other options: the object is unclaimed again.
        assert_eq!(
            l.release_quarantined(Retry::OptionsChanged).await.unwrap(),
            0
        );
        let l = SqliteLedger::open(&path).unwrap().reading_with("format=x");
        assert_eq!(
            l.release_quarantined(Retry::OptionsChanged).await.unwrap(),
            1
        );
        assert_eq!(
            l.unclaimed(vec![obj("a"), obj("b")]).await.unwrap(),
            vec![obj("a")]
        );
        assert_eq!(l.quarantined_count().await.unwrap(), 0);
        let b2 = claim(
            &l,
            &Batch::new("", Window::containing(0, 300), vec![obj("a")]),
        )
        .await;
        l.quarantine(&b2, &[q(obj("a"))]).await.unwrap();
        let report = BatchReport {
            batch_id: Some(b2.id.clone()),
            ..Default::default()
        };
        l.commit_batch(&report).await.unwrap();
        assert!(l.is_committed(&b2.id).await.unwrap());
        assert_eq!(l.release_quarantined(Retry::All).await.unwrap(), 1);
        // A batch of nothing but quarantined objects is forgotten with them: its retry (the same
        // batch id) runs again instead of being taken for committed. Batch b keeps object b.
        assert!(!l.is_committed(&b2.id).await.unwrap());
        assert_eq!(state(&l, &b.id).await, Some(BatchState::Sealed));
    }

    #[tokio::test]
    async fn passes_the_rollup_ledger_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let l = SqliteLedger::open(&dir.path().join("l.sqlite")).unwrap();
        flowmerge_core::conformance::rollup_ledger_conformance(&l, "out").await;
    }

    #[tokio::test]
    async fn passes_the_claim_ledger_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let l = SqliteLedger::open(&dir.path().join("l.sqlite")).unwrap();
        flowmerge_core::conformance::claim_ledger_conformance(&l, "sqlite").await;
    }

    #[tokio::test]
    async fn pending_seals_batches_abandoned_open_and_keeps_sealed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let l = SqliteLedger::open(&dir.path().join("l.sqlite")).unwrap();
        let w = Window::containing(0, 300);
        // A run that crashed after claiming (open, lease over) and one after sealing.
        let open = Batch::new("", w, vec![obj("a")]);
        let rec = |b: &Batch| BatchRecord {
            id: b.id.clone(),
            state: BatchState::Open,
            owner: "crashed".into(),
            lease_until: now() - 1,
            manifest: String::new(),
            window: w,
            source: SourceKind::Vpcflow,
        };
        l.open_batch(&rec(&open)).await.unwrap();
        l.claim_all("", &open.objects, &open.id, "crashed")
            .await
            .unwrap();
        let sealed = claim(&l, &Batch::new("", w, vec![obj("b")])).await;
        // Open with nothing claimed: sealed, then empty, not pending.
        let nothing = Batch::new("", w, vec![obj("c")]);
        l.open_batch(&rec(&nothing)).await.unwrap();
        let mut ids: Vec<BatchId> = l
            .pending()
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.id)
            .collect();
        ids.sort();
        let mut want = vec![open.id.clone(), sealed.id.clone()];
        want.sort();
        assert_eq!(ids, want);
        assert_eq!(state(&l, &nothing.id).await, Some(BatchState::Empty));
        assert_eq!(state(&l, &open.id).await, Some(BatchState::Sealed));
    }

    #[tokio::test]
    async fn a_ledger_of_the_first_schema_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE batches (
                    batch_id TEXT PRIMARY KEY, window_start INTEGER NOT NULL,
                    window_size INTEGER NOT NULL,
                    state TEXT NOT NULL CHECK (state IN ('claimed', 'committed')),
                    output_key TEXT, records_in INTEGER, rows_out INTEGER, bytes_in INTEGER,
                    bytes_out INTEGER, claimed_at INTEGER NOT NULL, committed_at INTEGER);
                 CREATE TABLE objects (key TEXT NOT NULL, etag TEXT NOT NULL, size INTEGER NOT NULL,
                    last_modified INTEGER NOT NULL, batch_id TEXT NOT NULL, PRIMARY KEY (key, etag));
                 CREATE TABLE quarantine (key TEXT NOT NULL, etag TEXT NOT NULL,
                    batch_id TEXT NOT NULL, reason TEXT NOT NULL, at INTEGER NOT NULL,
                    PRIMARY KEY (key, etag));
                 INSERT INTO batches VALUES ('done', 0, 300, 'committed', 'k', 1, 1, 1, 1, 0, 0);
                 INSERT INTO batches VALUES ('left', 0, 300, 'claimed', NULL, NULL, NULL, NULL, NULL, 0, NULL);
                 INSERT INTO objects VALUES ('a', 'e-a', 10, 0, 'done');
                 INSERT INTO objects VALUES ('b', 'e-b', 10, 0, 'left');",
            )
            .unwrap();
        }
        let l = SqliteLedger::open(&path).unwrap();
        assert_eq!(
            state(&l, &BatchId("done".into())).await,
            Some(BatchState::Committed)
        );
        let pending = l.pending().await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(
            (pending[0].id.0.as_str(), &pending[0].objects),
            ("left", &vec![obj("b")])
        );
        assert_eq!(
            l.unclaimed(vec![obj("a"), obj("c")]).await.unwrap(),
            vec![obj("c")]
        );
        // Reopening a migrated ledger changes nothing.
        drop(l);
        let l = SqliteLedger::open(&path).unwrap();
        assert_eq!(l.pending().await.unwrap().len(), 1);
    }
}
