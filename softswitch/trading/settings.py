"""The ``[trading]`` config section and :func:`make_broker`.

::

    [trading]
    backend = "sim"                 # or "http"
    db = "broker.sqlite"            # sim only; relative to switch.data_dir (the default)
    url = "https://broker.example/api"   # http only, required there
    timeout = 3.0                   # seconds per broker call
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config, ConfigError
from .base import Broker
from .http import HttpBroker
from .sim import SimBroker

BACKENDS = ("sim", "http")
_KEYS = {"backend", "db", "url", "timeout"}


@dataclass(frozen=True, slots=True)
class TradingSettings:
    backend: str = "sim"
    db_path: Path = Path("var/broker.sqlite")
    url: str | None = None
    timeout: float = 3.0


def trading_settings(config: Config) -> TradingSettings:
    """Validate ``config.raw["trading"]``; raises :class:`ConfigError` listing every problem."""
    raw: Any = config.raw.get("trading", {})
    where = f"{config.path}"
    if not isinstance(raw, dict):
        raise ConfigError([f"{where}: trading: expected a table [trading]"])
    problems = [
        f"{where}: trading.{k}: unknown key; expected one of: {', '.join(sorted(_KEYS))}"
        for k in raw
        if k not in _KEYS
    ]
    backend = raw.get("backend", "sim")
    if backend not in BACKENDS:
        problems.append(f"{where}: trading.backend: expected one of: {', '.join(BACKENDS)}, got {backend!r}")
    db = raw.get("db", "broker.sqlite")
    if not isinstance(db, str) or not db:
        problems.append(f"{where}: trading.db: expected a file path, got {db!r}")
        db = "broker.sqlite"
    url = raw.get("url")
    if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
        problems.append(f"{where}: trading.url: expected an http:// or https:// URL, got {url!r}")
    elif backend == "http" and url is None:
        problems.append(f'{where}: trading.url: required when backend = "http"')
    timeout = raw.get("timeout", 3.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 60:
        problems.append(f"{where}: trading.timeout: expected seconds in (0, 60], got {timeout!r}")
        timeout = 3.0
    if problems:
        raise ConfigError(problems)
    return TradingSettings(backend, config.data_dir / db, url, float(timeout))


def make_broker(config: Config) -> Broker:
    """The broker ``[trading]`` asks for (default: a SimBroker at ``data_dir/broker.sqlite``)."""
    s = trading_settings(config)
    if s.backend == "http":
        assert s.url is not None
        return HttpBroker(s.url, timeout=s.timeout)
    return SimBroker(s.db_path, timeout=s.timeout)
