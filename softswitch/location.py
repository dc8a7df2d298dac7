"""Location service: the registered contacts of each account, persisted in SQLite.

The in-memory table is authoritative; SQLite is a write-behind copy flushed in
batches (``flush()``), so a burst of thousands of REGISTER/s costs one
transaction per batch, not one per request. Expiry is wall-clock time (epoch
seconds) so it keeps counting across a restart.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS bindings (
    aor TEXT NOT NULL,
    contact TEXT NOT NULL,
    call_id TEXT NOT NULL,
    cseq INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    q REAL NOT NULL,
    source TEXT NOT NULL,
    instance TEXT,
    user_agent TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (aor, contact)
);
"""


@dataclass(slots=True)
class Binding:
    """One registered contact of an address of record."""

    aor: str
    contact: str  # the Contact URI exactly as the phone registered it
    call_id: str
    cseq: int
    expires_at: float
    q: float
    source: str  # "transport:host:port" the REGISTER came from (for NAT and connection reuse)
    instance: str | None = None
    user_agent: str | None = None
    updated_at: float = 0.0

    def remaining(self, now: float) -> int:
        return max(0, int(self.expires_at - now + 0.5))


class LocationStore:
    """Bindings by AOR, with a SQLite copy under ``data_dir``."""

    def __init__(self, db_path: Path | str | None) -> None:
        self._by_aor: dict[str, list[Binding]] = {}
        self._dirty: dict[tuple[str, str], Binding | None] = {}  # None: deleted
        self._db: sqlite3.Connection | None = None
        # told the AOR whenever its bindings change (the ACD tracks agents' phones with it)
        self.on_change: Callable[[str], None] | None = None
        if db_path is not None:
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(db_path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)

    def load(self, now: float) -> int:
        """Read the persisted bindings that have not expired; drop the rest. Returns the count."""
        if self._db is None:
            return 0
        self._db.execute("DELETE FROM bindings WHERE expires_at <= ?", (now,))
        rows = self._db.execute(
            "SELECT aor, contact, call_id, cseq, expires_at, q, source, instance, user_agent, updated_at "
            "FROM bindings ORDER BY aor, q DESC"
        ).fetchall()
        self._by_aor.clear()
        for row in rows:
            b = Binding(*row)
            self._by_aor.setdefault(b.aor, []).append(b)
        return len(rows)

    def bindings(self, aor: str, now: float) -> list[Binding]:
        """Current (unexpired) bindings of ``aor``, highest q first."""
        current = [b for b in self._by_aor.get(aor, ()) if b.expires_at > now]
        current.sort(key=lambda b: -b.q)
        return current

    def raw(self, aor: str) -> list[Binding]:
        """All stored bindings of ``aor`` including expired ones not yet swept."""
        return self._by_aor.get(aor, [])

    def put(self, binding: Binding) -> None:
        items = self._by_aor.setdefault(binding.aor, [])
        for i, b in enumerate(items):
            if b.contact == binding.contact:
                items[i] = binding
                break
        else:
            items.append(binding)
        self._dirty[(binding.aor, binding.contact)] = binding
        if self.on_change is not None:
            self.on_change(binding.aor)

    def delete(self, aor: str, contact: str) -> None:
        items = self._by_aor.get(aor)
        if items is None:
            return
        items[:] = [b for b in items if b.contact != contact]
        if not items:
            del self._by_aor[aor]
        self._dirty[(aor, contact)] = None
        if self.on_change is not None:
            self.on_change(aor)

    def sweep(self, now: float) -> int:
        """Forget expired bindings; returns how many."""
        expired = [b for items in self._by_aor.values() for b in items if b.expires_at <= now]
        for b in expired:
            self.delete(b.aor, b.contact)
        return len(expired)

    def __iter__(self) -> Iterator[Binding]:
        for items in self._by_aor.values():
            yield from items

    def __len__(self) -> int:
        return sum(len(items) for items in self._by_aor.values())

    @property
    def pending(self) -> int:
        return len(self._dirty)

    def flush(self) -> int:
        """Write pending changes to SQLite in one transaction; returns rows written."""
        if self._db is None or not self._dirty:
            self._dirty.clear()
            return 0
        dirty, self._dirty = self._dirty, {}
        upserts = [
            (b.aor, b.contact, b.call_id, b.cseq, b.expires_at, b.q, b.source, b.instance, b.user_agent,
             b.updated_at)
            for b in dirty.values() if b is not None
        ]  # fmt: skip
        deletes = [key for key, b in dirty.items() if b is None]
        db = self._db
        db.execute("BEGIN")
        try:
            if deletes:
                db.executemany("DELETE FROM bindings WHERE aor = ? AND contact = ?", deletes)
            if upserts:
                db.executemany("INSERT OR REPLACE INTO bindings VALUES (?,?,?,?,?,?,?,?,?,?)", upserts)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            dirty.update(self._dirty)
            self._dirty = dirty
            raise
        return len(dirty)

    def close(self) -> None:
        if self._db is not None:
            self.flush()
            self._db.close()
            self._db = None


def read_bindings(db_path: Path | str, now: float) -> list[Binding]:
    """Current bindings from a (possibly running) switch's database, for the CLI."""
    if not Path(db_path).exists():
        return []
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT aor, contact, call_id, cseq, expires_at, q, source, instance, user_agent, updated_at "
            "FROM bindings WHERE expires_at > ? ORDER BY aor, q DESC",
            (now,),
        ).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()
    return [Binding(*row) for row in rows]
