//! The record file: SQLite (rusqlite's bundled build, so every machine has the same SQLite) in
//! WAL mode, so that a prune reading it never waits for the listener writing it nor blocks it;
//! a busy timeout covers the moments two writers (a listener and an import) meet. Every batch
//! is one transaction. By default it is committed with `synchronous = FULL`: once `store`
//! returns, the batch survives a crash of the process and of the machine. The listener
//! commits with `NORMAL` unless told otherwise ([`Record::sync_every_commit`]): once `store`
//! returns the batch is in the WAL file and survives a crash of the process; the WAL is synced
//! at checkpoints. The registry posts one event per request, one request at a time, so a sync
//! per commit is the listener's pace (0.3 to 2.5 ms here: 3,000 to 400 events a second).
//!
//! Tables: `tag_pulls (repository, tag) -> last, digest`, `digest_pulls (repository, digest)
//! -> last`, and `meta` (`since`: when the record began; `last_event`: the newest pull stored).
//! Times are nanoseconds since the epoch. A pull only ever raises a time (the max of times),
//! so the same event stored twice changes nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::Pull;

/// How long a writer waits for another one before it fails (an import of a large log holds
/// the write lock for its transaction).
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The version of the tables, in `meta`: a later regsweep that changes them knows what it opens.
const SCHEMA: &str = "1";

const CREATE: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tag_pulls (
    repository TEXT NOT NULL, tag TEXT NOT NULL, last INTEGER NOT NULL, digest TEXT,
    PRIMARY KEY (repository, tag)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS digest_pulls (
    repository TEXT NOT NULL, digest TEXT NOT NULL, last INTEGER NOT NULL,
    PRIMARY KEY (repository, digest)) WITHOUT ROWID;
";

/// A record open for writing.
pub struct Record {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Record({})", self.path.display())
    }
}

/// What a batch changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    /// Pulls in the batch.
    pub pulls: usize,
    /// Rows whose time was raised or that were new.
    pub changed: usize,
}

fn pragmas(conn: &Connection, path: &Path) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT).with_context(|| format!("cannot set the busy timeout of {}", path.display()))?;
    Ok(())
}

impl Record {
    /// Opens the record at `path`, creating it (recording since `now`, nanoseconds) when absent.
    pub fn open(path: &Path, now: i64) -> Result<Record> {
        let conn = Connection::open(path).with_context(|| format!("cannot open the pull record {}", path.display()))?;
        pragmas(&conn, path)?;
        let setup = || -> rusqlite::Result<()> {
            // WAL: readers and the writer do not block each other; FULL: a commit is on disk.
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            // A checkpoint every 10,000 pages (40 MB of WAL), not 1,000: each copies a page into
            // the file once however often it changed since the last, and the listener's commits
            // touch the same few pages (one event per request): 1.5x the events a second.
            conn.pragma_update(None, "wal_autocheckpoint", 10_000)?;
            conn.execute_batch(CREATE)?;
            let tx = conn.unchecked_transaction()?;
            tx.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?1)", [SCHEMA])?;
            tx.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('since', ?1)", [now.to_string()])?;
            tx.commit()
        };
        setup().with_context(|| {
            format!("cannot set up the pull record {} (is it a regsweep pull record?)", path.display())
        })?;
        check_schema(&conn, path)?;
        Ok(Record { conn, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How a commit reaches the disk: `full` (the default) syncs the WAL at every commit, so a
    /// stored batch survives a crash of the machine; otherwise (`synchronous = NORMAL`) a commit
    /// is written to the WAL file but synced only at checkpoints: it survives a crash of the
    /// process, and a power loss may lose the last commits.
    pub fn sync_every_commit(&mut self, full: bool) -> Result<()> {
        let mode = if full { "FULL" } else { "NORMAL" };
        self.conn
            .pragma_update(None, "synchronous", mode)
            .with_context(|| format!("cannot set synchronous = {mode} on {}", self.path.display()))
    }

    /// Stores a batch of pulls in one transaction: all or nothing, on disk when this returns.
    pub fn store(&mut self, pulls: &[Pull]) -> Result<Stored> {
        let path = self.path.clone();
        let run = |conn: &mut Connection| -> rusqlite::Result<Stored> {
            let tx = conn.transaction()?;
            let mut stored = Stored { pulls: pulls.len(), changed: 0 };
            {
                let mut tag = tx.prepare_cached(
                    "INSERT INTO tag_pulls (repository, tag, last, digest) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (repository, tag) DO UPDATE SET last = excluded.last,
                         digest = coalesce(excluded.digest, digest)
                     WHERE excluded.last > last",
                )?;
                let mut digest = tx.prepare_cached(
                    "INSERT INTO digest_pulls (repository, digest, last) VALUES (?1, ?2, ?3)
                     ON CONFLICT (repository, digest) DO UPDATE SET last = excluded.last
                     WHERE excluded.last > last",
                )?;
                for p in pulls {
                    if let Some(t) = &p.tag {
                        stored.changed += tag.execute(params![p.repository, t, p.at, p.digest])?;
                    }
                    if let Some(d) = &p.digest {
                        stored.changed += digest.execute(params![p.repository, d, p.at])?;
                    }
                }
            }
            if let Some(newest) = pulls.iter().map(|p| p.at).max() {
                raise_meta(&tx, "last_event", newest, true)?;
            }
            tx.commit()?;
            Ok(stored)
        };
        run(&mut self.conn).with_context(|| format!("cannot store pulls in {}", path.display()))
    }

    /// Moves the start of the record back to `at` when it is earlier (an import of older logs
    /// covers the time they cover).
    pub fn began_at_most(&mut self, at: i64) -> Result<()> {
        raise_meta(&self.conn, "since", at, false).with_context(|| format!("cannot write {}", self.path.display()))
    }
}

/// Sets a time in `meta` to `value` if that raises it (`up`) or lowers it (not `up`).
fn raise_meta(conn: &Connection, key: &str, value: i64, up: bool) -> rusqlite::Result<()> {
    let sql = if up {
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value
         WHERE CAST(excluded.value AS INTEGER) > CAST(value AS INTEGER)"
    } else {
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value
         WHERE CAST(excluded.value AS INTEGER) < CAST(value AS INTEGER)"
    };
    conn.execute(sql, params![key, value.to_string()])?;
    Ok(())
}

fn meta_time(conn: &Connection, key: &str) -> rusqlite::Result<Option<i64>> {
    let v: Option<String> = conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional()?;
    Ok(v.and_then(|v| v.parse().ok()))
}

fn check_schema(conn: &Connection, path: &Path) -> Result<()> {
    let v: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| r.get(0))
        .optional()
        .with_context(|| format!("cannot read {} (is it a regsweep pull record?)", path.display()))?;
    match v.as_deref() {
        Some(SCHEMA) => Ok(()),
        Some(other) => bail!("{}: a pull record of schema {other}, this regsweep reads {SCHEMA}", path.display()),
        None => bail!("{}: not a regsweep pull record (no schema)", path.display()),
    }
}

/// Opens a record read-only (a listener may be writing it; WAL lets both go on). A file that
/// does not exist is an error, not an empty record.
fn open_read(path: &Path) -> Result<Connection> {
    if !path.is_file() {
        bail!("no pull record at {}", path.display());
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .with_context(|| format!("cannot open the pull record {}", path.display()))?;
    pragmas(&conn, path)?;
    check_schema(&conn, path)?;
    Ok(conn)
}

/// When a record began and its newest event (nanoseconds), as [`stream`] read them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub since: Option<i64>,
    pub last_event: Option<i64>,
}

/// One row of a record, as [`stream`] reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Row<'a> {
    /// The last pull of a tag by its name (nanoseconds).
    Tag { repository: &'a str, tag: &'a str, last: i64 },
    /// The last pull of a manifest, by tag or by digest.
    Digest { repository: &'a str, digest: &'a str, last: i64 },
}

/// Reads one record row by row, in one read transaction (a consistent snapshot). What
/// retention reads: a large record is not held twice (as rows, then as what they become).
pub fn stream(path: &Path, mut row: impl FnMut(Row)) -> Result<Span> {
    let conn = open_read(path)?;
    let mut run = || -> rusqlite::Result<Span> {
        let tx = conn.unchecked_transaction()?;
        let span = Span { since: meta_time(&tx, "since")?, last_event: meta_time(&tx, "last_event")? };
        let mut q = tx.prepare("SELECT repository, tag, last FROM tag_pulls")?;
        let mut rows = q.query([])?;
        while let Some(r) = rows.next()? {
            let (repository, tag) = (r.get_ref(0)?.as_str()?, r.get_ref(1)?.as_str()?);
            row(Row::Tag { repository, tag, last: r.get(2)? });
        }
        let mut q = tx.prepare("SELECT repository, digest, last FROM digest_pulls")?;
        let mut rows = q.query([])?;
        while let Some(r) = rows.next()? {
            let (repository, digest) = (r.get_ref(0)?.as_str()?, r.get_ref(1)?.as_str()?);
            row(Row::Digest { repository, digest, last: r.get(2)? });
        }
        Ok(span)
    };
    run().with_context(|| format!("cannot read the pull record {}", path.display()))
}

/// The last pull of a tag: when, and the digest it named then (when known).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagPull {
    pub at: i64,
    pub digest: Option<String>,
}

/// One or more records read together: per (repository, tag) and per (repository, digest) the
/// latest pull across them, and the earliest start. What retention by last pull reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pulls {
    pub tags: BTreeMap<(String, String), TagPull>,
    pub digests: BTreeMap<(String, String), i64>,
    /// The earliest `since` of the records: before it, "not pulled" means "not known".
    pub since: Option<i64>,
    /// The newest pull any of them holds.
    pub last_event: Option<i64>,
}

impl Pulls {
    /// Reads records (read-only: a listener may be writing them; WAL lets both go on). A file
    /// that does not exist is an error, not an empty record: a typo must not make every tag
    /// look unpulled.
    pub fn read(paths: &[PathBuf]) -> Result<Pulls> {
        let mut all = Pulls::default();
        for path in paths {
            let conn = open_read(path)?;
            all.add(&conn).with_context(|| format!("cannot read the pull record {}", path.display()))?;
        }
        Ok(all)
    }

    /// Adds one record's rows, in one read transaction (a consistent snapshot of it).
    fn add(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let tx = conn.unchecked_transaction()?;
        let since = meta_time(&tx, "since")?;
        self.since = match (self.since, since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_event = self.last_event.max(meta_time(&tx, "last_event")?);
        let mut q = tx.prepare("SELECT repository, tag, last, digest FROM tag_pulls")?;
        let mut rows = q.query([])?;
        while let Some(r) = rows.next()? {
            let pull = TagPull { at: r.get(2)?, digest: r.get(3)? };
            let e = self.tags.entry((r.get(0)?, r.get(1)?)).or_insert_with(|| TagPull { at: i64::MIN, digest: None });
            if pull.at > e.at {
                *e = pull;
            }
        }
        let mut q = tx.prepare("SELECT repository, digest, last FROM digest_pulls")?;
        let mut rows = q.query([])?;
        while let Some(r) = rows.next()? {
            let at: i64 = r.get(2)?;
            let e = self.digests.entry((r.get(0)?, r.get(1)?)).or_insert(i64::MIN);
            *e = (*e).max(at);
        }
        Ok(())
    }

    /// The last pull of a tag, by tag.
    pub fn tag(&self, repository: &str, tag: &str) -> Option<&TagPull> {
        self.tags.get(&(repository.to_string(), tag.to_string()))
    }

    /// The last pull of a manifest, by tag or by digest.
    pub fn digest(&self, repository: &str, digest: &str) -> Option<i64> {
        self.digests.get(&(repository.to_string(), digest.to_string())).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pull(tag: Option<&str>, digest: &str, at: i64) -> Pull {
        Pull { repository: "team/app".into(), tag: tag.map(String::from), digest: Some(digest.into()), at }
    }

    #[test]
    fn max_of_times_across_batches_and_records() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.db"), dir.path().join("b.db"));
        let mut ra = Record::open(&a, 100).unwrap();
        let batch = [pull(Some("v1"), "sha256:aa", 300), pull(None, "sha256:bb", 200)];
        assert_eq!(ra.store(&batch).unwrap().changed, 3);
        assert_eq!(ra.store(&batch).unwrap().changed, 0, "the same batch again changes nothing");
        ra.store(&[pull(Some("v1"), "sha256:cc", 250)]).unwrap();
        let mut rb = Record::open(&b, 50).unwrap();
        rb.store(&[pull(Some("v1"), "sha256:dd", 400), pull(None, "sha256:aa", 150)]).unwrap();
        let one = Pulls::read(std::slice::from_ref(&a)).unwrap();
        assert_eq!(one.tag("team/app", "v1"), Some(&TagPull { at: 300, digest: Some("sha256:aa".into()) }));
        assert_eq!(one.since, Some(100));
        assert_eq!(one.last_event, Some(300));
        let both = Pulls::read(&[a.clone(), b]).unwrap();
        assert_eq!(both.tag("team/app", "v1").unwrap().at, 400);
        assert_eq!(both.digest("team/app", "sha256:aa"), Some(300));
        assert_eq!(both.digest("team/app", "sha256:cc"), Some(250));
        assert_eq!(both.since, Some(50));
        assert_eq!(both.last_event, Some(400));
        // Streamed, one record gives the same rows.
        let (mut tags, mut digests) = (0, 0);
        let span = stream(&a, |row| match row {
            Row::Tag { tag, last, .. } => tags += usize::from(tag == "v1" && last == 300),
            Row::Digest { .. } => digests += 1,
        })
        .unwrap();
        assert_eq!((tags, digests, span), (1, 3, Span { since: Some(100), last_event: Some(300) }));
    }

    #[test]
    fn a_missing_record_is_an_error_naming_it() {
        let err = Pulls::read(&[PathBuf::from("/nonexistent/pulls.db")]).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/pulls.db"));
    }
}
