"""The state store on SQLite (the standard library's), the local API's default: the same item DynamoDB holds (the
attributes `codec.py` writes, kept as DynamoDB JSON), the same conditional write, done by the database: a row
is written only while its guard attributes are the ones read, inside one write transaction.

Durability (WAL journal): "process" (synchronous=NORMAL) answers a write once its commit is in the WAL file,
which survives the server being killed at any point; "machine" (synchronous=FULL) also fsyncs the WAL at every
commit, which survives an OS crash or a power cut, at the price of an fsync per commit. Writes are committed by
one writer thread, in groups: the requests waiting when a commit starts share the next one, so concurrent
requests for different users do not wait for each other's commits; a thread of its own copies the WAL into the
database, so that no commit pays for it. Several processes may share one file: WAL
lets them read while one writes, and the write lock is held for one group's transaction only.

A write the database refuses (disk full, read-only, locked past the busy timeout, an I/O error) raises
StoreUnavailable and changes nothing: its transaction is rolled back. A commit that reports a failure after its
data became durable is read back, and answered as the write it was (`_settle`). Expired items are removed at
start-up and then hourly, as DynamoDB's TTL would.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from carryover.core.history import LogEntry, RowLog
from carryover.errors import StoreUnavailable
from carryover.observability import logger
from carryover.store import NO_ITEM, StateStore, WriteConflict, guard
from carryover.store.blobs import BlobStore
from carryover.store.codec import TTL_ATTRIBUTE, epoch, from_json, parse, to_json
from carryover.store.item import Attempt, Item, Lifetimes, landed
from carryover.store.log import entry_of, from_line, to_line

Durability = Literal["process", "machine"]
SYNCHRONOUS: dict[Durability, str] = {"process": "NORMAL", "machine": "FULL"}
SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    user_id TEXT NOT NULL,
    model TEXT NOT NULL,
    item TEXT NOT NULL,          -- the DynamoDB item, as DynamoDB JSON
    expires_at INTEGER,          -- its TTL attribute, for the hourly sweep
    PRIMARY KEY (user_id, model)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS items_by_expiry ON items (expires_at);
CREATE TABLE IF NOT EXISTS blobs (
    key TEXT PRIMARY KEY,        -- a state kept as an object (`blobs.py`): its SHA-256
    data BLOB NOT NULL,
    created INTEGER NOT NULL     -- epoch seconds: the hourly sweep removes it past the state's TTL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log (
    user_id TEXT NOT NULL,
    model TEXT NOT NULL,
    write_id TEXT NOT NULL,      -- the write's id: an entry once
    line TEXT NOT NULL,          -- the entry as `store/log.py` writes it
    PRIMARY KEY (user_id, model, write_id)
) WITHOUT ROWID;
"""
GROUP_MOST = 256  # writes committed together at most
CHECKPOINT_EVERY_S = 1.0  # the WAL copied into the database this often, by a thread of its own
AUTOCHECKPOINT_PAGES = 10_000  # a commit checkpoints itself only past this (40 MB of WAL): a safety net
SWEEP_EVERY_S = 3600.0


@dataclass
class _Pending:
    """One conditional write waiting for the writer: `condition` None means the item must be absent."""

    user_id: str
    item: Item
    condition: Item | None
    attempt: Attempt
    done: threading.Event = field(default_factory=threading.Event)
    landed: bool = False
    ambiguous: bool = False  # after a failed commit, the item could not tell whether it landed
    error: StoreUnavailable | None = None
    found: Item | None = None  # refused: the item it found (NO_ITEM: none)


class SQLiteStateStore(StateStore):
    def __init__(
        self,
        path: Path,
        model_name: str,
        lifetimes: Lifetimes,
        clock: Callable[[], datetime],
        durability: Durability = "process",
        busy_timeout_s: float = 5.0,
    ) -> None:
        super().__init__(model_name, lifetimes, clock)
        self.path = path
        self._durability, self._busy_timeout_s = durability, busy_timeout_s
        self._readers = threading.local()
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._failures("open"):
            self._writer = self._connect(shared=True)
            self._writer.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
            self._writer.executescript(SCHEMA)
        self._closing = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoints, name="sqlite-checkpoints", daemon=True)
        self._checkpointer.start()
        self._swept = -SWEEP_EVERY_S  # the first group sweeps: start-up does not wait for it
        self._thread = threading.Thread(target=self._write_groups, name="sqlite-writer", daemon=True)
        self._thread.start()

    def _connect(self, shared: bool = False) -> sqlite3.Connection:
        """A connection in autocommit mode (transactions are explicit); `shared`: made here, used by the writer."""
        connection = sqlite3.connect(
            self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=not shared
        )
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={SYNCHRONOUS[self._durability]}")
        return connection

    @contextmanager
    def _failures(self, operation: str) -> Iterator[None]:
        """sqlite3's errors as the store's: StoreUnavailable, the cause logged; and files it cannot write refused
        up front (`_writable`)."""
        self._writable(operation)
        try:
            yield
        except sqlite3.Error as error:
            logger.warning("state store unavailable", extra={"operation": operation, "cause": str(error)})
            raise StoreUnavailable(str(error)) from error

    def _writable(self, operation: str) -> None:
        """StoreUnavailable when a file of the database cannot be written: every connection, a reader too, writes
        into the memory-mapped `-shm` file, and a write the file system refuses there is a SIGBUS that kills the
        process, not an error SQLite could return."""
        path = self._unwritable()
        if path is not None:
            logger.warning("state store unavailable", extra={"operation": operation, "cause": "not writable"})
            raise StoreUnavailable(f"{path} cannot be written")

    def _unwritable(self) -> str | None:
        """The first file of the database that exists and cannot be written."""
        paths = (f"{self.path}{suffix}" for suffix in ("", "-wal", "-shm"))
        return next((path for path in paths if not os.access(path, os.W_OK) and os.path.exists(path)), None)

    def _reader(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._readers, "connection", None)
        if connection is None:
            connection = self._readers.connection = self._connect()
        return connection

    def _get(self, user_id: str) -> Item | None:
        with self._failures("load"):
            row = (
                self._reader()
                .execute("SELECT item FROM items WHERE user_id = ? AND model = ?", (user_id, self._model))
                .fetchone()
            )
        return None if row is None else from_json(row[0])

    def _scan(self) -> Iterator[tuple[str, Item]]:
        with self._failures("scan"):
            rows = self._reader().execute("SELECT user_id, item FROM items WHERE model = ?", (self._model,)).fetchall()
        for user_id, item in rows:
            yield user_id, from_json(item)

    def _get_many(self, user_ids: Sequence[str]) -> dict[str, Item]:
        """One read of every user's item (a single SELECT; one snapshot of the database)."""
        marks = ", ".join("?" * len(user_ids))
        with self._failures("load"):
            rows = self._reader().execute(
                f"SELECT user_id, item FROM items WHERE model = ? AND user_id IN ({marks})",  # placeholders only
                (self._model, *user_ids),
            )
            return {user_id: from_json(item) for user_id, item in rows.fetchall()}

    def _reconnect(self) -> None:
        """Nothing to make again: the connections are to a local file."""

    def ping(self) -> None:
        with self._failures("ping"):
            self._reader().execute("SELECT 1 FROM items LIMIT 1").fetchall()

    def _put(self, user_id: str, item: Item, condition: Item | None, attempt: Attempt) -> None:
        pending = _Pending(user_id, item, condition, attempt)
        self._queue.put(pending)
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        if not pending.landed:
            raise WriteConflict(attempt, ambiguous=pending.ambiguous, found=pending.found)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._closing.set()
        self._checkpointer.join()

    def _checkpoints(self) -> None:
        """Copies the WAL into the database every CHECKPOINT_EVERY_S, passively (never waiting on a reader or the
        writer), so that no commit does it: a commit that checkpoints takes ten times as long as one that does not."""
        connection = self._connect()
        while not self._closing.wait(CHECKPOINT_EVERY_S):
            if self._unwritable() is not None:  # touching the -shm file then could be a SIGBUS (`_writable`)
                continue
            try:
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as error:
                logger.debug("checkpoint skipped", extra={"cause": str(error)})
        connection.close()

    def _write_groups(self) -> None:
        """The writer thread: each group of waiting writes in one transaction, one commit."""
        while (first := self._queue.get()) is not None:
            group = [first]
            while len(group) < GROUP_MOST:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # stop after this group
                    break
                group.append(more)
            self._commit(group)
        self._writer.close()

    def _commit(self, group: list[_Pending]) -> None:
        try:
            with self._failures("save"):
                self._transaction(group)
        except StoreUnavailable as error:
            self._settle(group, error)
        for pending in group:
            pending.done.set()

    def _transaction(self, group: list[_Pending]) -> None:
        self._writer.execute("BEGIN IMMEDIATE")
        try:
            for pending in group:
                pending.landed = self._apply(pending)
            if time.monotonic() - self._swept > SWEEP_EVERY_S:
                self._sweep()
            self._writer.execute("COMMIT")
        except BaseException:
            if self._writer.in_transaction:
                self._writer.execute("ROLLBACK")
            raise

    def _settle(self, group: list[_Pending], error: StoreUnavailable) -> None:
        """After a transaction failed: a commit can fail after it became durable, so each write's item is read
        back. A write that is there landed; one that is not gets the error (nothing of it was kept); one the item
        cannot tell about (other writers followed past the history) is a conflict, which the service resolves
        as it resolves a lost answer."""
        for pending in group:
            try:
                outcome = self._outcome(pending) if pending.landed else False
            except sqlite3.Error:
                outcome = False
            pending.landed, pending.ambiguous = outcome is True, outcome is None
            pending.error = error if outcome is False else None

    def _outcome(self, pending: _Pending) -> bool | None:
        row = self._writer.execute(
            "SELECT item FROM items WHERE user_id = ? AND model = ?", (pending.user_id, self._model)
        ).fetchone()
        return landed(pending.attempt, parse(None if row is None else from_json(row[0]), self._clock()))

    def _apply(self, pending: _Pending) -> bool:
        """The write, if the item is still as its writer read it; False (nothing written) if not."""
        key = (pending.user_id, self._model)
        row = self._writer.execute("SELECT item FROM items WHERE user_id = ? AND model = ?", key).fetchone()
        current = None if row is None else from_json(row[0])
        if (None if current is None else guard(current)) != pending.condition:
            pending.found = current or NO_ITEM
            return False
        expires_at = int(pending.item[TTL_ATTRIBUTE]["N"])
        self._writer.execute(
            "INSERT OR REPLACE INTO items (user_id, model, item, expires_at) VALUES (?, ?, ?, ?)",
            (*key, to_json(pending.item), expires_at),
        )
        self._log(key, pending.item)
        return True

    def _log(self, key: tuple[str, str], item: Item) -> None:
        """The write's log entry, in its transaction: its rows; a deletion removes the user's entries at once."""
        found = entry_of(item, self._blobs)  # rows kept as objects: committed before this transaction
        if found is None:
            return
        model, entry = found
        if entry.deleted:
            self._writer.execute("DELETE FROM log WHERE user_id = ? AND model = ?", key)
            return
        self._writer.execute(
            "INSERT OR IGNORE INTO log (user_id, model, write_id, line) VALUES (?, ?, ?, ?)",
            (*key, entry.write_id, to_line(model, entry)),
        )

    def _sweep(self) -> None:
        """Removes the items past their TTL, as DynamoDB's TTL does (there, within days; here, within the hour),
        and the state objects older than the state's TTL, as the state bucket's lifecycle rule does."""
        now = epoch(self._clock())
        self._writer.execute("DELETE FROM items WHERE expires_at < ?", (now,))
        oldest = now - int(self._lifetimes.state_ttl.total_seconds())
        self._writer.execute("DELETE FROM blobs WHERE created < ?", (oldest,))
        self._swept = time.monotonic()


class SQLiteLog(RowLog):
    """The row log the local store keeps beside its items (the `log` table), read without blocking the writer."""

    def __init__(self, path: Path, model_name: str) -> None:
        self._path, self._model = path, model_name

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        connection = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True, timeout=5.0)
        try:
            yield connection
        finally:
            connection.close()

    def users(self) -> list[str]:
        with self._reading() as connection:
            rows = connection.execute(
                "SELECT DISTINCT user_id FROM log WHERE model = ? ORDER BY user_id", (self._model,)
            )
            return [user for (user,) in rows]

    def entries(self, users: Sequence[str]) -> dict[str, list[LogEntry]]:
        found: dict[str, list[LogEntry]] = {user: [] for user in users}
        with self._reading() as connection:
            for start in range(0, len(users), 500):
                chunk = users[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                rows = connection.execute(
                    f"SELECT user_id, line FROM log WHERE model = ? AND user_id IN ({marks})",  # placeholders only
                    (self._model, *chunk),
                )
                for user, line in rows:
                    found[user].append(from_line(line)[1])
        return found


class SQLiteBlobs(BlobStore):
    """State objects in the local store's file (`blobs` table), each committed before the item that names it."""

    def __init__(self, path: Path, clock: Callable[[], datetime], busy_timeout_s: float = 5.0) -> None:
        self._path, self._clock, self._busy_timeout_s = path, clock, busy_timeout_s

    def renew(self) -> None:
        """Nothing to make again: each call connects to the local file anew."""

    @contextmanager
    def _connected(self, operation: str) -> Iterator[sqlite3.Connection]:
        try:
            connection = sqlite3.connect(self._path, timeout=self._busy_timeout_s, isolation_level=None)
            try:
                yield connection
            finally:
                connection.close()
        except sqlite3.Error as error:
            logger.warning("state objects unavailable", extra={"operation": operation, "cause": str(error)})
            raise StoreUnavailable(str(error)) from error

    def put(self, key: str, data: bytes) -> None:
        with self._connected("put blob") as connection:
            connection.execute(
                "INSERT OR IGNORE INTO blobs (key, data, created) VALUES (?, ?, ?)", (key, data, epoch(self._clock()))
            )

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        unique = list(dict.fromkeys(keys))
        marks = ", ".join("?" * len(unique))
        with self._connected("get blobs") as connection:
            rows = connection.execute(f"SELECT key, data FROM blobs WHERE key IN ({marks})", unique)  # placeholders
            return {key: bytes(data) for key, data in rows}
