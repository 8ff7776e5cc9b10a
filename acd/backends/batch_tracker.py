"""The Batch API tracker: every input file and batch a run directory submitted, and what became of each line.

One SQLite file per run directory (<run>/batches/tracker.sqlite). It is written before and after every call that
creates something on the server (an uploaded file, a batch), so a killed build's rerun:
  * re-uploads nothing: a request whose line sits in a known file waits for that file's batch (or creates the
    batch, when the build died between the upload and the batch);
  * polls the batches it knows instead of submitting their lines again;
  * counts each line's failed attempts across runs, so `max_retries` holds for the line, not per invocation.

Tables:
  files(file_id, model, lines, tokens, bytes, created, path)    one row per uploaded input file
  lines(custom_id, file_id, outcome)                            outcome: NULL until its batch is taken, then
                                                                "ok" or the failure's reason
  batches(batch_id, file_id, status, created, taken)            taken: its output/error files were read
  meta(key, value)                                              base_url, api_key_env (a name, never a key)

The registry (live_registry()) lists the trackers that have batches on a server right now, so `make down` and
`acd batches --cancel` can cancel them without knowing where the run directories are.
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterable

LIVE = ("validating", "in_progress", "finalizing", "cancelling")  # on the server, not yet over
TERMINAL = ("completed", "failed", "expired", "cancelled")
TRACKER_FILE = "batches/tracker.sqlite"


class Tracker:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), timeout=60.0, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout=60000")
        if str(path) != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(
            "CREATE TABLE IF NOT EXISTS files (file_id TEXT PRIMARY KEY, model TEXT, lines INT, tokens INT, "
            "  bytes INT, created REAL, path TEXT);"
            "CREATE TABLE IF NOT EXISTS lines (custom_id TEXT, file_id TEXT, outcome TEXT, "
            "  PRIMARY KEY (custom_id, file_id));"
            "CREATE INDEX IF NOT EXISTS lines_by_file ON lines (file_id);"
            "CREATE TABLE IF NOT EXISTS batches (batch_id TEXT PRIMARY KEY, file_id TEXT, status TEXT, "
            "  created REAL, taken INT DEFAULT 0);"
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);")

    def _run(self, sql: str, args: Iterable = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, tuple(args)).fetchall()

    # --- writes -------------------------------------------------------------------------------------------
    def set_meta(self, **kv: str) -> None:
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in kv.items()])

    def record_file(self, file_id: str, model: str, custom_ids: list[str], tokens: int, size: int,
                    path: str = "") -> None:
        """An uploaded input file and its lines (one transaction: a file is known with all its lines or not);
        `path`: the local copy it was uploaded from (removed once its batch is read)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (file_id, model, len(custom_ids), tokens, size, time.time(), path))
            self._db.executemany("INSERT OR IGNORE INTO lines VALUES (?, ?, NULL)", [(c, file_id) for c in custom_ids])
            self._db.execute("COMMIT")

    def record_batch(self, batch_id: str, file_id: str, status: str) -> None:
        self._run("INSERT OR REPLACE INTO batches VALUES (?, ?, ?, ?, 0)", (batch_id, file_id, status, time.time()))

    def set_status(self, batch_id: str, status: str) -> None:
        self._run("UPDATE batches SET status = ? WHERE batch_id = ?", (status, batch_id))

    def take(self, batch_id: str, file_id: str, outcomes: dict[str, str]) -> None:
        """A batch's results were read: each line's outcome, and the batch marked taken, in one transaction."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("UPDATE lines SET outcome = ? WHERE custom_id = ? AND file_id = ?",
                                 [(o, c, file_id) for c, o in outcomes.items()])
            self._db.execute("UPDATE batches SET taken = 1 WHERE batch_id = ?", (batch_id,))
            self._db.execute("COMMIT")

    def drop_batch(self, batch_id: str) -> None:
        """A batch the server refused before running a line (token_limit_exceeded): its file is submitted again."""
        self._run("UPDATE batches SET taken = 1 WHERE batch_id = ?", (batch_id,))

    # --- reads --------------------------------------------------------------------------------------------
    def meta(self) -> dict[str, str]:
        return dict(self._run("SELECT key, value FROM meta"))

    def history(self, custom_id: str) -> list[tuple[str, str | None]]:
        """(file_id, outcome) of every file the line was in, oldest first."""
        return self._run("SELECT l.file_id, l.outcome FROM lines l JOIN files f USING (file_id) "
                         "WHERE l.custom_id = ? ORDER BY f.created, l.rowid", (custom_id,))

    def file(self, file_id: str) -> tuple | None:
        """(file_id, model, lines, tokens, bytes, path)"""
        rows = self._run("SELECT file_id, model, lines, tokens, bytes, path FROM files WHERE file_id = ?", (file_id,))
        return rows[0] if rows else None

    def file_lines(self, file_id: str) -> list[str]:
        return [r[0] for r in self._run("SELECT custom_id FROM lines WHERE file_id = ?", (file_id,))]

    def batches_of(self, file_id: str) -> list[tuple[str, str, int]]:
        """(batch_id, status, taken), oldest first."""
        return self._run("SELECT batch_id, status, taken FROM batches WHERE file_id = ? ORDER BY created, rowid",
                         (file_id,))

    def untaken(self) -> list[tuple[str, str, str]]:
        """(batch_id, file_id, status) of batches whose results were never read (live, or over while no build
        was there to read them)."""
        return self._run("SELECT batch_id, file_id, status FROM batches WHERE taken = 0 ORDER BY created")

    def live(self) -> list[tuple[str, str, int]]:
        """(batch_id, status, lines) of batches that may still be running on the server."""
        q = ",".join("?" * len(LIVE))
        return self._run(f"SELECT b.batch_id, b.status, f.lines FROM batches b JOIN files f USING (file_id) "
                         f"WHERE b.taken = 0 AND b.status IN ({q}) ORDER BY b.created", LIVE)

    def summary(self) -> dict[str, int]:
        out = dict(self._run("SELECT status, count(*) FROM batches GROUP BY status"))
        out["files"] = self._run("SELECT count(*) FROM files")[0][0]
        out["lines"] = self._run("SELECT count(*) FROM lines")[0][0]
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()


# --- the registry of trackers with batches on a server ------------------------------------------------------

def registry_dir() -> Path:
    from acd.backends.cache import default_cache_dir

    return Path(os.environ.get("ACD_BATCH_REGISTRY") or default_cache_dir().parent / "batches-live")


def _entry(tracker_path: Path) -> Path:
    return registry_dir() / (hashlib.sha256(str(tracker_path.resolve()).encode()).hexdigest()[:16] + ".path")


def register_live(tracker_path: Path) -> None:
    from acd.atomicio import write_text

    entry = _entry(tracker_path)
    if not entry.exists():
        entry.parent.mkdir(parents=True, exist_ok=True)
        write_text(entry, str(tracker_path.resolve()))


def unregister_live(tracker_path: Path) -> None:
    _entry(tracker_path).unlink(missing_ok=True)


def live_registry() -> list[Path]:
    """Trackers that had batches on a server when last seen (stale entries are dropped by their readers)."""
    d = registry_dir()
    if not d.exists():
        return []
    out = []
    for e in sorted(d.glob("*.path")):
        p = Path(e.read_text().strip())
        if p.exists():
            out.append(p)
        else:
            e.unlink(missing_ok=True)
    return out
