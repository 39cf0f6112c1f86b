//! Opening SQLite connections with the pragmas every database file uses.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::error::EmbeddedError;
use crate::options::EmbeddedOptions;

fn sqlite_err(path: &Path, context: &'static str) -> impl FnOnce(rusqlite::Error) -> EmbeddedError {
    let path = path.to_path_buf();
    move |source| EmbeddedError::Sqlite {
        context,
        path,
        source,
    }
}

/// How long a connection waits on a lock before reporting `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens the single read-write connection of a database file: WAL mode,
/// `synchronous` from the options, a large page cache and statement cache.
pub(crate) fn open_writer(
    path: &Path,
    opts: &EmbeddedOptions,
) -> Result<Connection, EmbeddedError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite_err(path, "cannot open database"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(sqlite_err(path, "cannot set busy timeout"))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
        .map_err(sqlite_err(path, "cannot enable WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(EmbeddedError::Sqlite {
            context: "database refused WAL mode",
            path: path.to_path_buf(),
            source: rusqlite::Error::InvalidQuery,
        });
    }
    let cache_kib = i64::from(opts.cache_size_mib) * 1024;
    conn.execute_batch(&format!(
        "PRAGMA synchronous={sync};
         PRAGMA cache_size=-{cache_kib};
         PRAGMA temp_store=MEMORY;
         PRAGMA foreign_keys=OFF;",
        sync = opts.synchronous.pragma(),
    ))
    .map_err(sqlite_err(path, "cannot configure database"))?;
    conn.set_prepared_statement_cache_capacity(64);
    set_chunk_size(&conn, path)?;
    Ok(conn)
}

/// Steps in which SQLite grows (and truncates) a database file. Without
/// them a checkpoint that leaves the file longer changes its size, and its
/// fsync then also commits the new size and the blocks allocated for it: on
/// the dev machine (ext4) about 25 ms instead of 1 to 2 ms, once for nearly
/// every checkpoint of the store, whose file grows with every event. Paid on
/// the writer thread (the tail of a checkpoint), that was the largest part
/// of the ingest-to-alert p99 at 2,000 events/s. With chunks, the size
/// changes once per 16 MiB of growth. The price: SQLite's unix VFS extends
/// the file by writing one byte per block, so the growth is written twice,
/// as zeros and then as pages.
const CHUNK_BYTES: std::os::raw::c_int = 16 << 20;

fn set_chunk_size(conn: &Connection, path: &Path) -> Result<(), EmbeddedError> {
    let mut bytes = CHUNK_BYTES;
    conn.file_control(
        Some(rusqlite::MAIN_DB),
        rusqlite::FileControl::ChunkSize(&mut bytes),
    )
    .map_err(sqlite_err(path, "cannot set the file chunk size"))
}

/// Opens the connection a [`crate::checkpoint::Checkpointer`] copies WAL
/// frames into the database file with: read-write (a checkpoint writes the
/// database file) but it never starts a transaction, with the writer's
/// `synchronous` (so a checkpoint fsyncs as the writer would) and a small
/// page cache (a checkpoint does not read through it).
pub(crate) fn open_checkpointer(
    path: &Path,
    opts: &EmbeddedOptions,
) -> Result<Connection, EmbeddedError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite_err(path, "cannot open database for checkpoints"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(sqlite_err(path, "cannot set busy timeout"))?;
    conn.execute_batch(&format!(
        "PRAGMA synchronous={sync}; PRAGMA cache_size=-256;",
        sync = opts.synchronous.pragma(),
    ))
    .map_err(sqlite_err(path, "cannot configure checkpointer"))?;
    set_chunk_size(&conn, path)?;
    Ok(conn)
}

/// Opens a read-only connection for queries.
pub(crate) fn open_reader(
    path: &Path,
    opts: &EmbeddedOptions,
) -> Result<Connection, EmbeddedError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite_err(path, "cannot open database for reading"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(sqlite_err(path, "cannot set busy timeout"))?;
    let cache_kib = i64::from(opts.cache_size_mib.clamp(1, 16)) * 1024;
    conn.execute_batch(&format!(
        "PRAGMA cache_size=-{cache_kib}; PRAGMA temp_store=MEMORY;"
    ))
    .map_err(sqlite_err(path, "cannot configure reader"))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_files_grow_in_whole_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite");
        let opts = EmbeddedOptions {
            synchronous: crate::options::SyncMode::Off,
            ..Default::default()
        };
        let writer = open_writer(&path, &opts).unwrap();
        writer
            .execute_batch(
                "CREATE TABLE t (v BLOB NOT NULL);
                 INSERT INTO t (v) VALUES (zeroblob(100000));",
            )
            .unwrap();
        let checkpointer = open_checkpointer(&path, &opts).unwrap();
        checkpointer
            .execute_batch("PRAGMA wal_checkpoint(PASSIVE);")
            .unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(
            len, CHUNK_BYTES as u64,
            "a 100 kB database file should take one chunk"
        );
    }
}
