"""SQLite files the switch writes (CDRs, queue log): WAL, a schema version and forward migrations."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path


def open_versioned(
    path: Path,
    schema: str,
    version: int,
    migrations: Mapping[int, str],
    *,
    synchronous: str,
    what: str,
    error: type[Exception],
) -> sqlite3.Connection:
    """Open (creating) ``path`` in WAL mode and bring it to ``version``.

    A new file gets ``schema``; an older one runs ``migrations[n]`` (n -> n + 1) in one
    transaction; a newer one raises ``error`` naming ``what`` (the data the file holds).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.execute("PRAGMA busy_timeout=5000")
        _migrate(db, path, schema, version, migrations, what, error)
    except BaseException:
        db.close()
        raise
    return db


def _migrate(
    db: sqlite3.Connection,
    path: Path,
    schema: str,
    target: int,
    migrations: Mapping[int, str],
    what: str,
    error: type[Exception],
) -> None:
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = db.execute("SELECT version FROM schema_version").fetchone()
        if row is None:  # executescript() would commit mid-transaction, hence execute() per statement
            _run(db, schema)
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (target,))
        else:
            version = int(row[0])
            if version > target:
                raise error(
                    f"{path}: {what} schema version {version} is newer than this softswitch ({target})"
                )
            while version < target:
                _run(db, migrations[version])
                version += 1
            db.execute("UPDATE schema_version SET version = ?", (version,))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _run(db: sqlite3.Connection, script: str) -> None:
    for stmt in script.split(";"):
        if stmt.strip():
            db.execute(stmt)
