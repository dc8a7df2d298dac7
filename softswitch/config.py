"""The admin's config file (TOML), validated into typed settings.

Every error names the file, the line where one can be found, and the key path,
e.g. ``switch.toml:7: switch.listen[1]: unknown scheme 'sctp'; expected udp, tcp or tls``.
Sections that later subsystems own (ivr, queues, agents, ...) are kept as raw
tables here and validated by those subsystems' own checks.
"""

from __future__ import annotations

import csv
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .sip.auth import Credentials

if TYPE_CHECKING:
    from .acd.config import AcdSettings
    from .acd.settings import AgentSettings, QueueSettings

TRANSPORTS = ("udp", "tcp", "tls")
LANGUAGES = ("zh", "en")
ROUTE_TARGET = re.compile(r"^(extension|(ivr|queue|voicemail|trunk):[A-Za-z0-9_.-]+)$")
KNOWN_SECTIONS = {
    "switch", "registrar", "accounts", "routes", "recording", "trading", "ivr", "queues",
    "agents", "trunks", "accounts_file", "calls", "acd", "media",
}  # fmt: skip


class ConfigError(Exception):
    """One or more problems in a config file; ``str()`` lists them, one per line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Listener:
    transport: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Account:
    user: str
    credentials: Credentials
    name: str = ""


@dataclass(frozen=True, slots=True)
class Route:
    match: str
    to: str
    pattern: re.Pattern[str] | None  # None: exact match on ``match``

    def matches(self, number: str) -> bool:
        return self.pattern.match(number) is not None if self.pattern else number == self.match


@dataclass(frozen=True, slots=True)
class Trunk:
    """A SIP peer calls are sent to (``trunk:NAME``) and admitted from by source address."""

    name: str
    host: str
    port: int
    transport: str = "udp"


@dataclass(slots=True)
class RecordingSettings:
    enabled: bool = False
    format: str = "wav"
    path: str = "recordings/{date}/{call_id}.{ext}"
    pause_during_pin: bool = True


@dataclass(slots=True)
class Config:
    path: Path
    domain: str = "softswitch.local"
    listen: list[Listener] = field(default_factory=list)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    rtp_ports: tuple[int, int] = (20000, 39999)
    data_dir: Path = Path("var")
    language: str = "zh"
    max_calls: int = 4000
    accounts: dict[str, Account] = field(default_factory=dict)
    routes: list[Route] = field(default_factory=list)
    min_expires: int = 60
    max_expires: int = 7200
    default_expires: int = 3600
    nonce_ttl: float = 300.0
    trunks: dict[str, Trunk] = field(default_factory=dict)
    recording: RecordingSettings = field(default_factory=RecordingSettings)
    ring_timeout_s: float = 60.0
    rtp_timeout_s: float = 60.0
    rtp_mode: str = "per_leg"  # [media]: "per_leg" (a port pair per leg) or "shared" (one port, batched I/O)
    shared_rtp_port: int | None = None  # [media] shared_port: None = the first free pair of rtp_ports
    realtime_priority: int = 0  # [media]: SCHED_RR priority of the media engine's process (0 = off)
    # MD5 only by default: baresip 1.0 (libre) rejects a 401 that also offers SHA-256, and
    # SIPp answers only the first challenge. SHA-256 is one config line away.
    auth_algorithms: tuple[str, ...] = ("MD5",)
    raw: dict[str, Any] = field(default_factory=dict)
    queues: dict[str, QueueSettings] = field(default_factory=dict)
    agents: dict[str, AgentSettings] = field(default_factory=dict)
    acd: AcdSettings = field(default_factory=lambda: _acd_settings())

    def route(self, number: str) -> Route | None:
        """The dial plan's first route matching ``number``, or None; agents' feature codes come first."""
        if self.acd.feature(number) is not None:
            return Route(number, "feature:agent", None)
        return next((r for r in self.routes if r.matches(number)), None)


def _acd_settings() -> AcdSettings:
    from .acd.config import AcdSettings

    return AcdSettings()


class _Checker:
    """Collects problems with file/line/key context."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()
        self.problems: list[str] = []
        self._paths: list[str | None] | None = None

    def line_of(self, key: str) -> int | None:
        """Line number of a key path like ``routes[1].to`` or ``switch.listen[0]`` in the TOML text."""
        if self._paths is None:
            self._paths = _key_paths(self.lines)
        best: tuple[int, int] | None = None  # (path length, line)
        for n, path in enumerate(self._paths, start=1):
            if path is None:
                continue
            if path == key:
                return n
            if key.startswith((path + ".", path + "[")) and (best is None or len(path) > best[0]):
                best = (len(path), n)
        return best[1] if best else None

    def error(self, key: str, message: str, *, line: int | None = None, path: Path | None = None) -> None:
        line = line if line is not None else (self.line_of(key) if path is None else None)
        where = f"{path or self.path}:{line}" if line else f"{path or self.path}"
        self.problems.append(f"{where}: {key}: {message}")


_TABLE_LINE = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY_LINE = re.compile(r'^\s*((?:"[^"]*"|[A-Za-z0-9_-]+)(?:\s*\.\s*(?:"[^"]*"|[A-Za-z0-9_-]+))*)\s*=')


def _dotted(text: str) -> str:
    return ".".join(part.strip().strip('"') for part in re.findall(r'"[^"]*"|[^.]+', text))


def _key_paths(lines: list[str]) -> list[str | None]:
    """The key path each line defines (``routes[1].to``), or None; arrays of tables are counted."""
    counters: dict[str, int] = {}
    current = ""
    paths: list[str | None] = []
    for line in lines:
        m = _TABLE_LINE.match(line)
        if m:
            name = _dotted(m.group(2))
            if m.group(1) == "[[":
                counters[name] = counters.get(name, -1) + 1
                current = f"{name}[{counters[name]}]"
            else:
                current = name
            paths.append(current)
            continue
        m = _KEY_LINE.match(line)
        if m:
            leaf = _dotted(m.group(1))
            paths.append(f"{current}.{leaf}" if current else leaf)
        else:
            paths.append(None)
    return paths


def _parse_listen(value: str) -> Listener:
    m = re.fullmatch(r"([a-z]+)://(\[[0-9A-Fa-f:.]+\]|[^:/\[\]]+):(\d+)", value)
    if not m:
        raise ValueError(f"bad listen address {value!r}; expected scheme://host:port")
    scheme, host, port = m.group(1), m.group(2).strip("[]"), int(m.group(3))
    if scheme not in TRANSPORTS:
        raise ValueError(f"unknown scheme {scheme!r}; expected one of: {', '.join(TRANSPORTS)}")
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    return Listener(scheme, host, port)


def _check_type(chk: _Checker, key: str, value: Any, kind: type | tuple[type, ...], what: str) -> bool:
    if isinstance(value, bool) and kind is not bool and bool not in (kind if isinstance(kind, tuple) else ()):
        chk.error(key, f"expected {what}, got {value!r}")
        return False
    if not isinstance(value, kind):
        chk.error(key, f"expected {what}, got {type(value).__name__} {value!r}")
        return False
    return True


def _load_accounts_csv(chk: _Checker, key: str, csv_path: Path, out: dict[str, Account]) -> None:
    try:
        text = csv_path.read_text(encoding="utf-8")
    except OSError as e:
        chk.error(key, f"cannot read accounts file {csv_path}: {e.strerror}")
        return
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        chk.error(key, f"accounts file {csv_path} is empty; expected a header line user,password[,name]")
        return
    header = [h.strip().lower() for h in rows[0]]
    if header[:2] != ["user", "password"]:
        chk.error("header", "expected header line user,password[,name]", line=1, path=csv_path)
        return
    for n, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) < 2 or not row[0].strip() or not row[1]:
            chk.error("user,password", "expected user,password[,name]", line=n, path=csv_path)
            continue
        user = row[0].strip()
        if not re.fullmatch(r"[A-Za-z0-9_.!~*'()&=+$,;?/-]+", user):
            chk.error("user", f"invalid user name {user!r}", line=n, path=csv_path)
            continue
        if user in out:
            chk.error("user", f"duplicate account {user!r}", line=n, path=csv_path)
            continue
        name = row[2].strip() if len(row) > 2 else ""
        out[user] = Account(user, Credentials(password=row[1]), name)


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; raises :class:`ConfigError` listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([f"{path}: cannot read config: {e.strerror}"]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        where = f"{path}:{m.group(1)}" if m else str(path)
        raise ConfigError([f"{where}: TOML syntax error: {e}"]) from None
    chk = _Checker(path, text)
    base = path.parent
    cfg = Config(path=path, raw=raw)

    for section in raw:
        if section not in KNOWN_SECTIONS:
            chk.error(section, f"unknown section; expected one of: {', '.join(sorted(KNOWN_SECTIONS))}")

    sw = raw.get("switch", {})
    if not isinstance(sw, dict):
        chk.error("switch", "expected a table [switch]")
        sw = {}
    known_switch = {
        "domain", "listen", "tls_cert", "tls_key", "rtp_ports", "data_dir", "language", "max_calls",
        "accounts_file",
    }  # fmt: skip
    for key in sw:
        if key not in known_switch:
            chk.error(f"switch.{key}", f"unknown key; expected one of: {', '.join(sorted(known_switch))}")
    if "domain" in sw and _check_type(chk, "switch.domain", sw["domain"], str, "a string"):
        if not re.fullmatch(r"[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]", sw["domain"]):
            chk.error("switch.domain", f"invalid domain {sw['domain']!r}")
        cfg.domain = sw["domain"]
    listen = sw.get("listen", ["udp://127.0.0.1:5060"])
    if _check_type(chk, "switch.listen", listen, list, "a list of scheme://host:port strings"):
        for i, item in enumerate(listen):
            key = f"switch.listen[{i}]"
            if not _check_type(chk, key, item, str, "a string scheme://host:port"):
                continue
            try:
                cfg.listen.append(_parse_listen(item))
            except ValueError as e:
                chk.error(key, str(e))
        seen = {(lst.transport, lst.host, lst.port) for lst in cfg.listen}
        if len(seen) != len(cfg.listen):
            chk.error("switch.listen", "duplicate listener")
    for key in ("tls_cert", "tls_key"):
        if key in sw and _check_type(chk, f"switch.{key}", sw[key], str, "a file path"):
            p = base / sw[key]
            setattr(cfg, key, p)
            if not p.is_file():
                chk.error(f"switch.{key}", f"file not found: {p}")
    if any(lst.transport == "tls" for lst in cfg.listen) and (cfg.tls_cert is None or cfg.tls_key is None):
        chk.error("switch.listen", "a tls:// listener needs switch.tls_cert and switch.tls_key")
    if "rtp_ports" in sw:
        rp = sw["rtp_ports"]
        if (
            not isinstance(rp, list)
            or len(rp) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in rp)
        ):
            chk.error("switch.rtp_ports", f"expected [first, last] port numbers, got {rp!r}")
        elif not (1024 <= rp[0] < rp[1] <= 65535) or rp[1] - rp[0] < 3:
            chk.error(
                "switch.rtp_ports", f"expected 1024 <= first < last <= 65535 (room for 2 ports), got {rp}"
            )
        else:
            cfg.rtp_ports = (rp[0], rp[1])
    if "data_dir" in sw and _check_type(chk, "switch.data_dir", sw["data_dir"], str, "a folder path"):
        cfg.data_dir = base / sw["data_dir"]
    else:
        cfg.data_dir = base / cfg.data_dir
    if "language" in sw and _check_type(chk, "switch.language", sw["language"], str, "a string"):
        if sw["language"] not in LANGUAGES:
            chk.error("switch.language", f"unknown language {sw['language']!r}; expected one of: zh, en")
        else:
            cfg.language = sw["language"]
    if "max_calls" in sw and _check_type(chk, "switch.max_calls", sw["max_calls"], int, "an integer"):
        if sw["max_calls"] < 1:
            chk.error("switch.max_calls", f"expected a positive integer, got {sw['max_calls']}")
        else:
            cfg.max_calls = sw["max_calls"]

    reg = raw.get("registrar", {})
    if _check_type(chk, "registrar", reg, dict, "a table [registrar]"):
        for key, value in reg.items():
            full = f"registrar.{key}"
            if key == "auth_algorithms":
                if (
                    not isinstance(value, list)
                    or not value
                    or any(v not in ("MD5", "SHA-256") for v in value)
                    or len(set(value)) != len(value)
                ):
                    chk.error(
                        full,
                        f'expected a list of "MD5" and/or "SHA-256" in order of preference, got {value!r}',
                    )
                else:
                    cfg.auth_algorithms = tuple(value)
            elif key not in ("min_expires", "max_expires", "default_expires", "nonce_ttl_s"):
                chk.error(
                    full,
                    "unknown key; expected min_expires, max_expires, default_expires, nonce_ttl_s, auth_algorithms",
                )
            elif _check_type(chk, full, value, int, "an integer number of seconds") and value < 1:
                chk.error(full, f"expected a positive number of seconds, got {value}")
            elif key == "nonce_ttl_s":
                cfg.nonce_ttl = float(value)
            else:
                setattr(cfg, key, value)
        if not cfg.min_expires <= cfg.default_expires <= cfg.max_expires:
            chk.error("registrar", "expected min_expires <= default_expires <= max_expires")

    accounts_file = sw.get("accounts_file", raw.get("accounts_file"))
    if accounts_file is not None:
        key = "switch.accounts_file" if "accounts_file" in sw else "accounts_file"
        if _check_type(chk, key, accounts_file, str, "a CSV file path"):
            _load_accounts_csv(chk, key, base / accounts_file, cfg.accounts)
    accts = raw.get("accounts", {})
    if _check_type(chk, "accounts", accts, dict, "tables [accounts.USER]"):
        for user, acct in accts.items():
            key = f"accounts.{user}"
            if not _check_type(chk, key, acct, dict, f"a table [accounts.{user}]"):
                continue
            if not re.fullmatch(r"[A-Za-z0-9_.!~*'()&=+$,;?/-]+", user):
                chk.error(key, f"invalid user name {user!r}")
                continue
            for k in acct:
                if k not in ("password", "ha1", "name"):
                    chk.error(f"{key}.{k}", "unknown key; expected password, ha1 or name")
            password, ha1 = acct.get("password"), acct.get("ha1")
            if (password is None) == (ha1 is None):
                chk.error(key, "set exactly one of password or ha1")
                continue
            if password is not None and not _check_type(chk, f"{key}.password", password, str, "a string"):
                continue
            if ha1 is not None and (not isinstance(ha1, str) or not re.fullmatch(r"[0-9a-fA-F]{32}", ha1)):
                chk.error(f"{key}.ha1", "expected 32 hex digits (MD5 of user:realm:password)")
                continue
            if user in cfg.accounts:
                chk.error(key, f"account {user!r} is also defined in the accounts file")
                continue
            name = acct.get("name", "")
            if not isinstance(name, str):
                chk.error(f"{key}.name", "expected a string")
                name = ""
            creds = Credentials(password=password) if ha1 is None else Credentials(ha1_md5=ha1.lower())
            cfg.accounts[user] = Account(user, creds, name)

    routes = raw.get("routes", [])
    if _check_type(chk, "routes", routes, list, "an array of tables [[routes]]"):
        for i, r in enumerate(routes):
            key = f"routes[{i}]"
            if (
                not isinstance(r, dict)
                or not isinstance(r.get("match"), str)
                or not isinstance(r.get("to"), str)
            ):
                chk.error(key, 'expected match = "..." and to = "..." strings')
                continue
            for k in r:
                if k not in ("match", "to"):
                    chk.error(f"{key}.{k}", "unknown key; expected match or to")
            pattern = None
            if r["match"].startswith("^"):
                try:
                    pattern = re.compile(r["match"])
                except re.error as e:
                    chk.error(f"{key}.match", f"bad regex {r['match']!r}: {e}")
                    continue
            if not ROUTE_TARGET.match(r["to"]):
                chk.error(
                    f"{key}.to",
                    f"unknown target {r['to']!r}; expected extension, ivr:<menu>, queue:<name>, "
                    "voicemail:<box> or trunk:<name>",
                )
                continue
            cfg.routes.append(Route(r["match"], r["to"], pattern))

    _load_calls(chk, raw, cfg)
    _load_media(chk, raw, cfg)
    _check_ivr(chk, raw, cfg)
    from .acd.config import load_acd

    load_acd(chk, raw, cfg)
    if chk.problems:
        raise ConfigError(chk.problems)
    from .trading.settings import trading_settings

    trading_settings(cfg)  # raises ConfigError naming file and key
    if chk.problems:
        raise ConfigError(chk.problems)
    return cfg


def prompt_names(language: str | None = None) -> set[str] | None:
    """Names of the shipped prompts (every language, or one), from the manifests; None without prompts/."""
    from .media.prompts import PromptError, load_manifest
    from .prompts_build import default_root

    root = default_root()
    names: set[str] = set()
    found = False
    for lang in (language,) if language else ("zh", "en"):
        path = root / lang / "manifest.toml"
        if path.is_file():
            try:
                manifest = load_manifest(path)
            except PromptError:
                continue
            names |= set(manifest.prompts) | set(manifest.music)
            found = True
    return names if found else None


def _check_ivr(chk: _Checker, raw: dict[str, Any], cfg: Config) -> None:
    """[ivr.*] menus: every menu, flow, queue and prompt they name must exist; so must ivr: routes."""
    from .ivr import parse_menus

    ivr = raw.get("ivr", {})
    if not _check_type(chk, "ivr", ivr, dict, "tables [ivr.NAME]"):
        return
    queues = raw.get("queues", {})
    _, problems = parse_menus(
        ivr, prompt_names=prompt_names(), queues=set(queues) if isinstance(queues, dict) else set()
    )
    for key, message in problems:
        chk.error(key, message)
    for i, r in enumerate(cfg.routes):
        if r.to.startswith("ivr:") and r.to[4:] not in ivr:
            chk.error(f"routes[{i}].to", f"unknown menu {r.to[4:]!r}; define [ivr.{r.to[4:]}]")


def _load_calls(chk: _Checker, raw: dict[str, Any], cfg: Config) -> None:
    """[trunks.*], [recording] and [calls]."""
    trunks = raw.get("trunks", {})
    if _check_type(chk, "trunks", trunks, dict, "tables [trunks.NAME]"):
        for name, t in trunks.items():
            key = f"trunks.{name}"
            if not _check_type(chk, key, t, dict, f"a table [trunks.{name}]"):
                continue
            for k in t:
                if k not in ("address", "transport"):
                    chk.error(f"{key}.{k}", "unknown key; expected address or transport")
            addr = t.get("address")
            m = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[^:\[\]]+):(\d+)", addr) if isinstance(addr, str) else None
            if m is None or not 0 < int(m.group(2)) < 65536:
                chk.error(f"{key}.address", f'expected "host:port", got {addr!r}')
                continue
            transport = t.get("transport", "udp")
            if transport not in TRANSPORTS:
                chk.error(f"{key}.transport", f"unknown transport {transport!r}; expected udp, tcp or tls")
                continue
            cfg.trunks[name] = Trunk(name, m.group(1).strip("[]"), int(m.group(2)), transport)
    for i, r in enumerate(cfg.routes):
        if r.to.startswith("trunk:") and r.to[6:] not in cfg.trunks:
            chk.error(f"routes[{i}].to", f"unknown trunk {r.to[6:]!r}; define [trunks.{r.to[6:]}]")
    rec = raw.get("recording", {})
    if _check_type(chk, "recording", rec, dict, "a table [recording]"):
        for k, v in rec.items():
            key = f"recording.{k}"
            if k in ("enabled", "pause_during_pin"):
                if _check_type(chk, key, v, bool, "true or false"):
                    setattr(cfg.recording, k, v)
            elif k == "format":
                if v not in ("wav", "flac"):
                    chk.error(key, f"unknown format {v!r}; expected wav or flac")
                else:
                    cfg.recording.format = v
            elif k == "path":
                if _check_type(chk, key, v, str, "a path template"):
                    try:
                        v.format(date="d", call_id="c", ext="wav", caller="a", callee="b")
                    except (KeyError, IndexError, ValueError) as e:
                        chk.error(key, f"bad template {v!r}: {e}; fields: date, call_id, ext, caller, callee")
                    else:
                        cfg.recording.path = v
            else:
                chk.error(key, "unknown key; expected enabled, format, path, pause_during_pin")
    calls = raw.get("calls", {})
    if _check_type(chk, "calls", calls, dict, "a table [calls]"):
        for k, v in calls.items():
            key = f"calls.{k}"
            if k not in ("ring_timeout_s", "rtp_timeout_s"):
                chk.error(key, "unknown key; expected ring_timeout_s, rtp_timeout_s")
            elif _check_type(chk, key, v, (int, float), "a number of seconds") and v <= 0:
                chk.error(key, f"expected a positive number of seconds, got {v}")
            else:
                setattr(cfg, k, float(v))


def _load_media(chk: _Checker, raw: dict[str, Any], cfg: Config) -> None:
    """[media]: rtp_mode = "per_leg" | "shared", shared_port (even, inside switch.rtp_ports),
    realtime_priority (0-99)."""
    media = raw.get("media", {})
    if not _check_type(chk, "media", media, dict, "a table [media]"):
        return
    for k, v in media.items():
        key = f"media.{k}"
        if k == "rtp_mode":
            if v not in ("per_leg", "shared"):
                chk.error(key, f'unknown mode {v!r}; expected "per_leg" or "shared"')
            else:
                cfg.rtp_mode = v
        elif k == "shared_port":
            if not _check_type(chk, key, v, int, "an even port number"):
                continue
            first, last = cfg.rtp_ports
            if v % 2 or not first <= v < last:
                chk.error(key, f"expected an even port inside switch.rtp_ports {first}-{last}, got {v}")
            else:
                cfg.shared_rtp_port = v
        elif k == "realtime_priority":
            if _check_type(chk, key, v, int, "a priority 0-99") and not 0 <= v <= 99:
                chk.error(key, f"expected 0 (off) to 99, got {v}")
            elif isinstance(v, int) and not isinstance(v, bool):
                cfg.realtime_priority = v
        else:
            chk.error(key, "unknown key; expected rtp_mode, shared_port, realtime_priority")
    if cfg.shared_rtp_port is not None and cfg.rtp_mode != "shared":
        chk.error("media.shared_port", 'only used with rtp_mode = "shared"')
