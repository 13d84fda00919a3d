"""The evaluated-subnet store: one row per (architecture, evaluation protocol), in SQLite.

Contract (:class:`EvalStore`): ``add`` inserts a record unless its ``(arch_id, protocol)`` is stored
already and says which happened; a stored record never changes; ``records`` returns them in insertion
order. Any number of processes may add to the same store at once and no row is lost or duplicated:
SQLite's write lock serialises inserts, ``INSERT OR IGNORE`` on the primary key dedups them, and WAL
mode lets readers go on while one process writes. A process killed mid-evaluation loses only the
record it had not added yet, because every ``add`` is its own transaction.

A store belongs to one supernet and one evaluation set: the first writer records their fingerprints
and every later opener must present the same ones, so rows scored by different weights never mix.
``info`` is descriptive metadata (where the supernet lies, its features) that later stages pass on.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PredictnasError
from ..space import SpaceConfig

SCHEMA_VERSION = 1
# fingerprint keys that say what a stored WER means: rows stored before one of them was recorded are refused
ROW_MEANING = ("supernet", "space", "decoder")


@dataclass(frozen=True)
class EvalRecord:
    """One subnet scored by one protocol (``"dev"``: the dev set; others: repeated evaluations)."""

    arch_id: str
    protocol: str
    arch: dict[str, Any]
    wer: dict[str, float]
    cer: dict[str, float]
    intent_accuracy: dict[str, float | None]
    params: int
    flops: int
    latency_ms: float | None = None  # LUT estimate when a table was given, for coverage reports
    proxies: dict[str, float] = field(default_factory=dict)
    eval_seconds: float = 0.0
    proxy_seconds: float = 0.0
    created: float = field(default_factory=time.time)

    def to_dict(self) -> dict:
        return asdict(self)


class EvalStore:
    """Base class of evaluated-subnet stores (see the module docstring for the contract)."""

    def add(self, record: EvalRecord) -> bool:
        """Store ``record``; False when ``(arch_id, protocol)`` was stored already (nothing changes)."""
        raise NotImplementedError

    def stored_ids(self, protocol: str = "dev") -> set[str]:
        raise NotImplementedError

    def records(self, protocol: str = "dev") -> list[EvalRecord]:
        raise NotImplementedError

    def close(self) -> None:
        pass


_COLUMNS = ("arch_id", "protocol", "arch", "wer", "cer", "intent_accuracy", "params", "flops", "latency_ms",
            "proxies", "eval_seconds", "proxy_seconds", "created")
_JSON_COLUMNS = {"arch", "wer", "cer", "intent_accuracy", "proxies"}


class SQLiteStore(EvalStore):
    """An :class:`EvalStore` in one SQLite file (``evals.sqlite`` in the run directory)."""

    def __init__(self, path: str | Path, fingerprint: dict[str, str] | None = None, info: dict | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._open()
        except sqlite3.DatabaseError as e:
            raise PredictnasError(f"{self.path}: not a usable evaluation store ({e})") from None
        self.fingerprint = self._check_fingerprint(fingerprint or {})
        if info:
            for key, value in info.items():
                self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"info.{key}", json.dumps(value)))
        self.info = {k.removeprefix("info."): json.loads(v) for k, v in self._meta().items() if k.startswith("info.")}

    def _open(self, patience_s: float = 60.0) -> None:
        """Connect, switch to WAL and create the tables, retrying while another process does the same.

        SQLite answers "database is locked" at once, without waiting on the busy timeout, to a
        connection that arrives while another one converts a new file to WAL or recovers its index.
        """
        deadline = time.monotonic() + patience_s
        while True:
            # autocommit mode: each statement is its own transaction unless we open one
            db = sqlite3.connect(self.path, timeout=patience_s, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(f"PRAGMA busy_timeout={int(patience_s * 1000)}")
                self._db = db
                self._create()
                return
            except sqlite3.OperationalError as e:
                db.close()
                if "locked" not in str(e) and "busy" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05 + 0.1 * random.random())

    def _create(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS evals (arch_id TEXT NOT NULL, protocol TEXT NOT NULL, arch TEXT NOT NULL,"
                " wer TEXT NOT NULL, cer TEXT NOT NULL, intent_accuracy TEXT NOT NULL, params INTEGER NOT NULL,"
                " flops INTEGER NOT NULL, latency_ms REAL, proxies TEXT NOT NULL, eval_seconds REAL NOT NULL,"
                " proxy_seconds REAL NOT NULL, created REAL NOT NULL, PRIMARY KEY (arch_id, protocol))")
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        version = self._meta().get("schema_version")
        if version != str(SCHEMA_VERSION):
            raise PredictnasError(f"{self.path}: store schema version {version}, this predictnas reads "
                                  f"{SCHEMA_VERSION}; use another --run-dir")

    def _meta(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def _check_fingerprint(self, fingerprint: dict[str, str]) -> dict[str, str]:
        """Record the fingerprint on first use; afterwards, refuse a different one. A key of what the rows
        mean (:data:`ROW_MEANING`) that rows were stored without (before it was recorded) counts as different."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            has_rows = self._db.execute("SELECT 1 FROM evals LIMIT 1").fetchone() is not None
            recorded = {k for k in self._meta() if k.startswith("fingerprint.")}
            unrecorded = [k for k in fingerprint if k in ROW_MEANING and f"fingerprint.{k}" not in recorded]
            if has_rows and unrecorded:
                raise PredictnasError(f"{self.path}: its rows were evaluated before the {unrecorded[0]} was recorded "
                                      f"(this run's: {fingerprint[unrecorded[0]]}); use another store or --run-dir")
            for key, value in fingerprint.items():
                self._db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (f"fingerprint.{key}", str(value)))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        stored = {k.removeprefix("fingerprint."): v for k, v in self._meta().items() if k.startswith("fingerprint.")}
        for key, value in fingerprint.items():
            if stored.get(key) != str(value):
                raise PredictnasError(f"{self.path}: its rows were evaluated with another {key} "
                                      f"({stored.get(key)} vs {value}); use another store or --run-dir")
        return stored

    def add(self, record: EvalRecord) -> bool:
        values = [json.dumps(v, sort_keys=True) if name in _JSON_COLUMNS else v
                  for name, v in zip(_COLUMNS, (getattr(record, c) for c in _COLUMNS))]
        cursor = self._db.execute(f"INSERT OR IGNORE INTO evals ({', '.join(_COLUMNS)}) "
                                  f"VALUES ({', '.join('?' * len(_COLUMNS))})", values)
        return cursor.rowcount == 1

    def stored_ids(self, protocol: str = "dev") -> set[str]:
        rows = self._db.execute("SELECT arch_id FROM evals WHERE protocol = ?", (protocol,)).fetchall()
        return {r[0] for r in rows}

    def records(self, protocol: str = "dev") -> list[EvalRecord]:
        rows = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM evals WHERE protocol = ? ORDER BY rowid",
                                (protocol,)).fetchall()
        return [EvalRecord(**{name: json.loads(v) if name in _JSON_COLUMNS else v for name, v in zip(_COLUMNS, row)})
                for row in rows]

    def space_config(self) -> SpaceConfig:
        """The search space whose subnets the store holds (recorded by ``predictnas sample``)."""
        text = self.fingerprint.get("space")
        if text is None:
            raise PredictnasError(f"{self.path}: the store does not say which search space it holds")
        return SpaceConfig.from_dict(json.loads(text))

    def protocols(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT protocol, COUNT(*) FROM evals GROUP BY protocol").fetchall())

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "SQLiteStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
