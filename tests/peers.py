"""Drivers for real-peer tests and benches: the switch as a subprocess, SIPp and baresip.

Everything binds to loopback on free ports, lives in a temp folder, and is bounded in time.
Used by ``tests/test_register_peers.py`` (as ``peers``) and ``bench/register.py`` (as ``tests.peers``).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------- tools


def require_tools(*tools: str) -> None:
    """Skip the calling test when a peer tool is missing; fail instead when ``CI`` is set."""
    from .tools import require_tool

    for tool in tools:
        require_tool(tool)


# ---------------------------------------------------------------- ports


def _bindable(port: int, kinds: Iterable[int], host: str = LOOPBACK) -> bool:
    for kind in kinds:
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind((host, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def free_port(*, udp: bool = True, tcp: bool = True, even: bool = False) -> int:
    """A random loopback port free for the asked kinds (never 5060, which a real switch may own).

    Drawn from 40000-59999, apart from the switches' RTP ranges (the default 20000-39999 and
    :func:`free_port_range`'s), where a call's media socket could take it between check and use.
    """
    kinds = [k for k, want in ((socket.SOCK_DGRAM, udp), (socket.SOCK_STREAM, tcp)) if want]
    for _ in range(500):
        p = random.randrange(40000, 60000)
        if even:
            p &= ~1
        if _bindable(p, kinds) and (not even or _bindable(p + 1, [socket.SOCK_DGRAM])):
            return p
    raise RuntimeError("no free loopback port")


def free_port_range(n: int = 100) -> tuple[int, int]:
    """A loopback UDP port range [first, last] (first even) whose ports are all free right now,
    within 10000-32767: below the kernel's ephemeral ports and apart from :func:`free_port`'s."""
    for _ in range(200):
        first = random.randrange(10000, 32768 - n, 2)
        if all(_bindable(p, [socket.SOCK_DGRAM]) for p in range(first, first + n)):
            return first, first + n - 1
    raise RuntimeError("no free loopback port range")


# ---------------------------------------------------------------- the switch


@dataclass(frozen=True, slots=True)
class Registration:
    """One row of ``softswitch registrations``."""

    aor: str
    expires: int
    q: float
    contact: str
    source: str
    user_agent: str


def parse_registrations(text: str) -> list[Registration]:
    rows: list[Registration] = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("account ") or line.strip() == "no registrations":
            continue
        if re.match(r"^\d+ bindings, \d+ accounts$", line.strip()):
            continue
        parts = line.split(None, 5)
        if len(parts) < 5:
            raise ValueError(f"unexpected registrations line: {line!r}")
        rows.append(
            Registration(
                parts[0],
                int(parts[1]),
                float(parts[2]),
                parts[3],
                parts[4],
                parts[5] if len(parts) > 5 else "",
            )
        )
    return rows


def write_users(path: Path, users: Sequence[tuple[str, str]]) -> Path:
    """Accounts CSV for the switch (header user,password,name)."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user", "password", "name"])
        for user, password in users:
            w.writerow([user, password, f"User {user}"])
    return path


def write_injection(path: Path, users: Sequence[tuple[str, str]]) -> Path:
    """SIPp injection file: SEQUENTIAL, then ``user;password`` lines (cycled by SIPp)."""
    path.write_text("SEQUENTIAL\n" + "".join(f"{u};{p}\n" for u, p in users))
    return path


def make_users(n: int, first: int = 1001, password: str = "pw{user}") -> list[tuple[str, str]]:
    return [(str(u), password.format(user=u)) for u in range(first, first + n)]


class Switch:
    """The switch as a subprocess on free loopback ports, with a temp config and data dir.

    ``transports`` lists the listeners to open ("udp", "tcp", "tls"); UDP and TCP share one port,
    TLS gets its own. ``rtp_ports`` sets ``switch.rtp_ports``; ``extra_toml`` is appended to the
    config (``[routes]``, ``[recording]``, ``[calls]`` ...). Use as a context manager or call
    :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        workdir: Path,
        users: Sequence[tuple[str, str]],
        *,
        transports: Sequence[str] = ("udp", "tcp"),
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        log_level: str = "info",
        domain: str = "softswitch.test",
        registrar: dict[str, Any] | None = None,
        python: Sequence[str] | None = None,
        rtp_ports: tuple[int, int] | None = None,
        extra_toml: str = "",
        run_args: Sequence[str] = (),
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.users = list(users)
        self.transports = list(transports)
        self.log_level = log_level
        self.domain = domain
        self.python = list(python) if python else [sys.executable]
        self.run_args = list(run_args)  # appended to `softswitch run` (e.g. --media-workers 2)
        self.port = free_port()
        self.tls_port = free_port(udp=False) if "tls" in self.transports else 0
        self.config_path = self.workdir / "switch.toml"
        self.log_path = self.workdir / "switch.log"
        self.proc: subprocess.Popen[bytes] | None = None
        write_users(self.workdir / "accounts.csv", self.users)
        listen = [f"{t}://{LOOPBACK}:{self.tls_port if t == 'tls' else self.port}" for t in self.transports]
        lines = [
            "[switch]",
            f'domain = "{domain}"',
            "listen = [" + ", ".join(f'"{x}"' for x in listen) + "]",
            'data_dir = "var"',
            'accounts_file = "accounts.csv"',
        ]
        if tls_cert is not None and tls_key is not None:
            lines += [f'tls_cert = "{tls_cert}"', f'tls_key = "{tls_key}"']
        self.rtp_ports = rtp_ports
        if rtp_ports is not None:
            lines.append(f"rtp_ports = [{rtp_ports[0]}, {rtp_ports[1]}]")
        reg = {"min_expires": 60, "max_expires": 7200, "default_expires": 3600, **(registrar or {})}
        lines += ["", "[registrar]"] + [f"{k} = {json.dumps(v)}" for k, v in reg.items()]
        if extra_toml:
            lines += ["", extra_toml.strip()]
        self.config_path.write_text("\n".join(lines) + "\n")
        self.data_dir = self.workdir / "var"

    @property
    def target(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cli(self, *args: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """``softswitch ARGS -c <this switch's config>`` (e.g. ``broker seed``); raises on failure when ``check``."""
        cmd = [*self.python, "-m", "softswitch", *args, "-c", str(self.config_path)]
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise RuntimeError(f"softswitch {' '.join(args)} failed: {done.stdout}{done.stderr}")
        return done

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, timeout: float = 15.0) -> Switch:
        """Start and wait until it answers (the "listening on" log line, or an OPTIONS over UDP)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        logf = self.log_path.open("ab")
        cmd = [
            *self.python,
            "-m",
            "softswitch",
            "run",
            "-c",
            str(self.config_path),
            "--log-level",
            self.log_level,
            *self.run_args,
        ]
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        logf.close()
        deadline = time.monotonic() + timeout
        seen = len(self.log())  # a restart appends: look only at the new part
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"switch exited with {self.proc.returncode} at start:\n{self.log()[-3000:]}"
                )
            if "listening on" in self.log()[seen:] or ("udp" in self.transports and self._probe_udp()):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"switch did not come up within {timeout}s:\n{self.log()[-3000:]}")

    def _probe_udp(self) -> bool:
        try:
            status, _ = sip_udp_exchange(self.port, options_request(self.port, 0), timeout=0.2)
        except (TimeoutError, OSError):
            return False
        return status == 200

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait (then SIGKILL); returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return self.proc.returncode

    def registrations(self, timeout: float = 15.0) -> list[Registration]:
        out = subprocess.run(
            [sys.executable, "-m", "softswitch", "registrations", "-c", str(self.config_path)],
            cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"softswitch registrations failed ({out.returncode}): {out.stderr}")
        return parse_registrations(out.stdout)

    def wait_registrations(self, count: int, timeout: float = 3.0) -> list[Registration]:
        """Poll the CLI until ``count`` bindings are listed (the switch flushes every 0.2 s)."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.registrations()
            if len(rows) >= count or time.monotonic() >= deadline:
                return rows
            time.sleep(0.1)

    def cdr(self, timeout: float = 15.0) -> list[dict[str, str]]:
        """Rows of ``softswitch cdr --csv`` (oldest first), as dicts keyed by the CSV header."""
        out = subprocess.run(
            [sys.executable, "-m", "softswitch", "cdr", "-c", str(self.config_path), "--csv"],
            cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"softswitch cdr failed ({out.returncode}): {out.stderr}")
        rows = list(csv.DictReader(out.stdout.splitlines()))
        return sorted(rows, key=lambda r: r.get("start", ""))

    def wait_cdr(self, count: int = 1, timeout: float = 5.0) -> list[dict[str, str]]:
        """Poll the CLI until at least ``count`` CDR rows exist (or ``timeout``); returns the rows."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.cdr()
            if len(rows) >= count or time.monotonic() >= deadline:
                return rows
            time.sleep(0.2)

    def tracebacks(self) -> list[str]:
        """Tracebacks the switch logged (it logs and survives unexpected errors)."""
        text = self.log()
        return [m.group(0) for m in re.finditer(r"(?ms)^[^\n]*\nTraceback.*?(?=^\d{4}-\d\d-\d\d |\Z)", text)]

    def __enter__(self) -> Switch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB."""
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


# ---------------------------------------------------------------- raw SIP from Python


def options_request(
    port: int, local_port: int, *, transport: str = "UDP", call_id: str | None = None
) -> bytes:
    cid = call_id or f"opt-{random.getrandbits(48):x}"
    return (
        f"OPTIONS sip:{LOOPBACK}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {LOOPBACK}:{local_port};branch=z9hG4bK{random.getrandbits(48):x};rport\r\n"
        f"From: <sip:probe@{LOOPBACK}>;tag={random.getrandbits(32):x}\r\n"
        f"To: <sip:{LOOPBACK}:{port}>\r\n"
        f"Call-ID: {cid}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def register_request(
    port: int,
    user: str,
    *,
    transport: str,
    local_port: int,
    call_id: str,
    cseq: int,
    expires: int = 600,
    authorization: str | None = None,
) -> bytes:
    t = transport.upper()
    lines = [
        f"REGISTER sip:{LOOPBACK}:{port} SIP/2.0",
        f"Via: SIP/2.0/{t} {LOOPBACK}:{local_port};branch=z9hG4bK{random.getrandbits(64):x};rport",
        f"From: <sip:{user}@{LOOPBACK}:{port}>;tag={random.getrandbits(32):x}",
        f"To: <sip:{user}@{LOOPBACK}:{port}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{user}@{LOOPBACK}:{local_port};transport={transport.lower()}>",
        f"Expires: {expires}",
        "Max-Forwards: 70",
        "User-Agent: peers-test",
    ]
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def status_of(data: bytes) -> int:
    m = re.match(rb"SIP/2\.0 (\d{3}) ", data)
    if not m:
        raise ValueError(f"not a SIP response: {data[:80]!r}")
    return int(m.group(1))


def header_values(data: bytes, name: str) -> list[str]:
    text = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    return [m.group(1).strip() for m in re.finditer(rf"(?im)^{re.escape(name)}[ \t]*:(.*)$", text)]


def sip_udp_exchange(
    port: int, data: bytes | None, *, timeout: float = 2.0, sock: socket.socket | None = None
) -> tuple[int, bytes]:
    """Send one request over UDP and return (status, raw) of the first final response."""
    own = sock is None
    s = sock or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if own:
            s.bind((LOOPBACK, 0))
        if data is not None:
            s.sendto(data, (LOOPBACK, port))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no SIP response")
            s.settimeout(left)
            try:
                raw, _ = s.recvfrom(65535)
            except TimeoutError:
                raise TimeoutError("no SIP response") from None
            status = status_of(raw)
            if status >= 200:
                return status, raw
    finally:
        if own:
            s.close()


class SipStreamClient:
    """One TCP or TLS connection, with Content-Length framing of responses."""

    def __init__(self, port: int, *, tls: ssl.SSLContext | None = None, timeout: float = 5.0) -> None:
        raw = socket.create_connection((LOOPBACK, port), timeout=timeout)
        self.sock: socket.socket = tls.wrap_socket(raw, server_hostname=LOOPBACK) if tls else raw
        self.local_port: int = self.sock.getsockname()[1]
        self.buf = b""
        self.timeout = timeout

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_message(self) -> bytes:
        deadline = time.monotonic() + self.timeout
        while True:
            head, sep, rest = self.buf.partition(b"\r\n\r\n")
            if sep:
                values = header_values(head + b"\r\n\r\n", "Content-Length") or header_values(
                    head + b"\r\n\r\n", "l"
                )
                n = int(values[0]) if values else 0
                if len(rest) >= n:
                    self.buf = rest[n:]
                    return head + sep + rest[:n]
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no complete SIP message")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by the switch")
            self.buf += chunk

    def final_response(self) -> tuple[int, bytes]:
        while True:
            raw = self.read_message()
            status = status_of(raw)
            if status >= 200:
                return status, raw

    def close(self) -> None:
        self.sock.close()


def parse_challenge(value: str) -> dict[str, str]:
    scheme, _, rest = value.partition(" ")
    assert scheme.lower() == "digest", value
    return {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
            for m in re.finditer(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))', rest)}  # fmt: skip


def digest_authorization(challenge: str, user: str, password: str, method: str, uri: str) -> str:
    """An Authorization value answering a WWW-Authenticate challenge (MD5 or SHA-256, qop=auth)."""
    import hashlib

    c = parse_challenge(challenge)
    algorithm = c.get("algorithm", "MD5")
    h = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}[algorithm.upper()]

    def hx(s: str) -> str:
        return h(s.encode()).hexdigest()

    ha1 = hx(f"{user}:{c['realm']}:{password}")
    ha2 = hx(f"{method}:{uri}")
    parts = [f'username="{user}"', f'realm="{c["realm"]}"', f'nonce="{c["nonce"]}"', f'uri="{uri}"']
    qops = [q.strip() for q in c.get("qop", "").split(",") if q.strip()]
    if "auth" in qops:
        cnonce, nc = f"{random.getrandbits(64):016x}", "00000001"
        resp = hx(f"{ha1}:{c['nonce']}:{nc}:{cnonce}:auth:{ha2}")
        parts += ["qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
    else:
        resp = hx(f"{ha1}:{c['nonce']}:{ha2}")
    parts += [f'response="{resp}"', f"algorithm={algorithm}"]
    if "opaque" in c:
        parts.append(f'opaque="{c["opaque"]}"')
    return "Digest " + ", ".join(parts)


def self_signed_cert(folder: Path, host: str = LOOPBACK) -> tuple[Path, Path]:
    """A self-signed certificate for ``host`` (IP SAN), written as PEM; returns (cert, key)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "switch.pem", folder / "switch.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


# ---------------------------------------------------------------- SIPp

_REGISTER_HEAD = """\
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@[remote_ip]:[remote_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field0]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: {cseq} REGISTER
      Contact: <sip:[field0]@[local_ip]:[local_port];transport=[transport]>
"""
_REGISTER_TAIL = """\
      Expires: [expires]
      Max-Forwards: 70
      User-Agent: softswitch-tests-sipp
      Content-Length: 0

"""


def register_scenario(*, expect_final: int = 200) -> str:
    """SIPp REGISTER with digest auth; one SIPp "call" = one user registered (fields: user;password).

    The authenticated REGISTER must get ``expect_final`` (200, or 401 for the wrong-password
    scenario); anything else is an unexpected message and fails the call. Response times:
    ``challenge`` (first REGISTER -> 401) and ``auth`` (REGISTER with credentials -> final).
    """
    first = _REGISTER_HEAD.format(cseq=1) + _REGISTER_TAIL
    second = (
        _REGISTER_HEAD.format(cseq=2)
        + '      [authentication username="[field0]" password="[field1]"]\n'
        + _REGISTER_TAIL
    )
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="softswitch register expecting {expect_final}">
  <send retrans="500" start_rtd="challenge">
    <![CDATA[
{first}    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="401" auth="true" rtd="challenge"/>
  <send retrans="500" start_rtd="auth">
    <![CDATA[
{second}    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="{expect_final}" rtd="auth"/>
  <ResponseTimeRepartition value="1, 2, 5, 10, 20, 50, 100, 200, 500, 1000"/>
</scenario>
"""


def _hms_ms(v: str) -> float | None:
    """SIPp durations: HH:MM:SS:mmmuuu."""
    try:
        h, m, s, frac = v.split(":")
        return (int(h) * 3600 + int(m) * 60 + int(s)) * 1000 + int(frac) / 1000
    except ValueError:
        return None


def percentile(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, max(0, round(p / 100 * (len(v) - 1))))]


@dataclass
class SippResult:
    rc: int
    out: Path
    wall_s: float
    stats: dict[str, str] = field(default_factory=dict)  # last (cumulative) row of -trace_stat
    rtt: dict[str, list[float]] = field(default_factory=dict)  # rtd name -> samples (ms)
    timed_out: bool = False

    def count(self, name: str) -> int:
        v = self.stats.get(f"{name}(C)", self.stats.get(name, "0")) or "0"
        return int(v) if v.isdigit() else 0

    @property
    def successful(self) -> int:
        return self.count("SuccessfulCall")

    @property
    def failed(self) -> int:
        return self.count("FailedCall")

    @property
    def failures_by_reason(self) -> dict[str, int]:
        return {
            k[:-3]: int(v)
            for k, v in self.stats.items()
            if k.startswith("Failed")
            and k.endswith("(C)")
            and k != "FailedCall(C)"
            and v.isdigit()
            and int(v)
        }

    @property
    def elapsed_s(self) -> float | None:
        ms = _hms_ms(self.stats.get("ElapsedTime(C)", ""))
        return ms / 1000 if ms is not None else None

    def errors(self, limit: int = 4000) -> str:
        p = self.out / "errors.log"
        return p.read_text(errors="replace")[:limit] if p.exists() else ""

    def describe(self) -> str:
        stdout = self.out / "sipp.stdout"
        tail = stdout.read_text(errors="replace")[-1500:] if stdout.exists() else ""
        return (
            f"sipp rc={self.rc} successful={self.successful} failed={self.failed} "
            f"reasons={self.failures_by_reason} timed_out={self.timed_out} out={self.out}\n"
            f"{tail}"
            f"\nerrors.log:\n{self.errors()}"
        )


def run_sipp(
    target: str,
    scenario_xml: str,
    users: Sequence[tuple[str, str]],
    out: Path,
    *,
    calls: int,
    rate: float,
    transport: str = "udp",
    limit: int | None = None,
    expires: int = 3600,
    timeout: float = 30.0,
    trace_rtt: bool = True,
    rtt_freq: int = 1,
    extra: Sequence[str] = (),
) -> SippResult:
    """Run SIPp as a UAC against ``target``; hard-bounded by ``timeout`` (SIPp's own, then SIGKILL)."""
    out.mkdir(parents=True, exist_ok=True)
    scen = out / "scenario.xml"
    scen.write_text(scenario_xml)
    inf = write_injection(out / "users.csv", users)
    cmd = [
        "sipp", target, "-sf", str(scen), "-inf", str(inf),
        "-t", {"udp": "u1", "tcp": "t1"}[transport],
        "-i", LOOPBACK, "-p", str(free_port()), "-mi", LOOPBACK, "-mp", str(free_port(even=True)),
        "-m", str(calls), "-r", str(rate), "-key", "expires", str(expires),
        "-nostdin", "-trace_stat", "-stf", str(out / "stat.csv"), "-fd", "1",
        "-trace_err", "-error_file", str(out / "errors.log"),
        "-timeout", f"{max(1, int(timeout))}s", "-timeout_error",
    ]  # fmt: skip
    if limit is not None:
        cmd += ["-l", str(limit)]
    if trace_rtt:
        cmd += ["-trace_rtt", "-rtt_freq", str(rtt_freq)]
    cmd += list(extra)
    t0 = time.monotonic()
    timed_out = False
    with (out / "sipp.stdout").open("wb") as so:
        proc = subprocess.Popen(cmd, cwd=out, stdin=subprocess.DEVNULL, stdout=so, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        try:
            rc = proc.wait(timeout=timeout + 10)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait(timeout=5)
    return sipp_result(rc, out, time.monotonic() - t0, timed_out)


def sipp_result(rc: int, out: Path, wall_s: float, timed_out: bool) -> SippResult:
    """Collect a finished SIPp run's stat.csv (last row) and *_rtt.csv files from ``out``."""
    result = SippResult(rc, out, wall_s, timed_out=timed_out)
    stat = out / "stat.csv"
    if stat.exists():
        with stat.open(newline="") as f:
            rows = [r for r in csv.reader(f, delimiter=";") if r]
        if len(rows) >= 2:
            result.stats = dict(zip(rows[0], rows[-1], strict=False))
    for rtt_file in out.glob("*_rtt.csv"):
        with rtt_file.open(newline="") as fh:
            for r in csv.reader(fh, delimiter=";"):
                if len(r) >= 3 and r[0] != "Date_ms":
                    try:
                        result.rtt.setdefault(r[2], []).append(float(r[1]))
                    except ValueError:
                        continue
    return result


class SippProcess:
    """One SIPp run in the background, bounded by SIPp's own ``-timeout`` and a kill in :meth:`wait`.

    A UAS when ``target`` is None (it listens on ``port``), else a UAC towards ``target``. Every SIP
    message goes to ``OUT/messages.log`` and the scenario's ``<log>`` lines to ``OUT/logs.log``;
    ``keys`` become ``-key NAME VALUE`` (``[NAME]`` in the scenario; ``sdp_port`` defaults to SIPp's
    own media port). ``pcap`` is copied to
    ``OUT/media.pcap`` (SIPp runs in ``OUT``; scenarios play ``media.pcap``).
    """

    def __init__(
        self,
        scenario: Path,
        out: Path,
        *,
        target: str | None = None,
        port: int | None = None,
        users: Sequence[tuple[str, str]] = (),
        service: str | None = None,
        calls: int = 1,
        keys: dict[str, str | int] | None = None,
        duration_ms: int | None = None,
        rtp_echo: bool = False,
        pcap: Path | None = None,
        timeout: float = 30.0,
        extra: Sequence[str] = (),
    ) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.media_port = free_port(even=True)
        self.timeout = timeout
        cmd = [
            "sipp", *([target] if target else []), "-sf", str(scenario),
            "-t", "u1", "-i", LOOPBACK, "-p", str(self.port), "-mi", LOOPBACK, "-mp", str(self.media_port),
            "-m", str(calls), "-nostdin",
            "-trace_stat", "-stf", str(self.out / "stat.csv"), "-fd", "1",
            "-trace_err", "-error_file", str(self.out / "errors.log"),
            "-trace_msg", "-message_file", str(self.out / "messages.log"),
            "-trace_logs", "-log_file", str(self.out / "logs.log"),
            "-timeout", f"{max(1, int(timeout))}s", "-timeout_error",
        ]  # fmt: skip
        if users:
            cmd += ["-inf", str(write_injection(self.out / "users.csv", users))]
        if service is not None:
            cmd += ["-s", service]
        if duration_ms is not None:
            cmd += ["-d", str(duration_ms)]
        if rtp_echo:
            cmd.append("-rtp_echo")
        keys = {"sdp_port": self.media_port, **(keys or {})}  # our scenarios' SDP port: SIPp's own by default
        for k, v in keys.items():
            cmd += ["-key", k, str(v)]
        if pcap is not None:
            shutil.copyfile(pcap, self.out / "media.pcap")
        self.cmd = cmd + list(extra)
        self.proc: subprocess.Popen[bytes] | None = None
        self._t0 = 0.0
        self.result: SippResult | None = None

    def start(self) -> SippProcess:
        self._t0 = time.monotonic()
        with (self.out / "sipp.stdout").open("wb") as so:
            self.proc = subprocess.Popen(self.cmd, cwd=self.out, stdin=subprocess.DEVNULL, stdout=so,
                                         stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for SIPp to end (killing it after ``timeout``, default its own bound + 10 s)."""
        assert self.proc is not None, "not started"
        if self.result is not None:
            return self.result
        timed_out = False
        try:
            rc = self.proc.wait(timeout=self.timeout + 10 if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(self.proc.pid, signal.SIGKILL)
            rc = self.proc.wait(timeout=5)
        self.result = sipp_result(rc, self.out, time.monotonic() - self._t0, timed_out)
        return self.result

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def logs(self) -> list[str]:
        p = self.out / "logs.log"
        return p.read_text(errors="replace").splitlines() if p.exists() else []

    def values(self, key: str) -> list[str]:
        """Every ``key=value`` token the scenario logged, in order (values end at a space)."""
        return [
            m.group(1) for line in self.logs() for m in re.finditer(rf"(?:^|\s){re.escape(key)}=(\S*)", line)
        ]

    def wait_value(self, key: str, timeout: float) -> str | None:
        """The first logged value of ``key``, polling the log file for up to ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.values(key)
            if found:
                return found[0]
            if time.monotonic() >= deadline or not self.running():
                found = self.values(key)
                return found[0] if found else None
            time.sleep(0.05)

    def messages(self) -> str:
        p = self.out / "messages.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def describe(self) -> str:
        res = self.result or sipp_result(-1, self.out, 0.0, False)
        return (
            f"{res.describe()}\nlogs:\n"
            + "\n".join(self.logs()[-40:])
            + f"\nmessages:\n{self.messages()[-6000:]}"
        )


# ---------------------------------------------------------------- registering a contact from Python


def register_contact(
    port: int, user: str, password: str, *, contact_port: int, expires: int = 600, timeout: float = 3.0
) -> int:
    """Digest REGISTER of ``user`` with Contact ``sip:user@127.0.0.1:contact_port``, sent FROM that port.

    Use it before starting a SIPp UAS on ``contact_port`` (the port must still be free). Returns the
    final status (200 when registered).
    """
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((LOOPBACK, contact_port))
    try:
        cid = f"reg-{user}-{random.getrandbits(48):x}"
        req = register_request(port, user, transport="udp", local_port=contact_port, call_id=cid, cseq=1,
                               expires=expires)  # fmt: skip
        status, raw = sip_udp_exchange(port, req, sock=s, timeout=timeout)
        if status != 401:
            return status
        challenge = header_values(raw, "WWW-Authenticate")[0]
        auth = digest_authorization(challenge, user, password, "REGISTER", f"sip:{LOOPBACK}:{port}")
        req = register_request(port, user, transport="udp", local_port=contact_port, call_id=cid, cseq=2,
                               expires=expires, authorization=auth)  # fmt: skip
        return sip_udp_exchange(port, req, sock=s, timeout=timeout)[0]
    finally:
        s.close()


def __getattr__(name: str) -> Any:
    # the baresip driver lives in tests/baresip.py; ``peers.Baresip`` keeps working
    if name in ("Baresip", "BARESIP_CONFIG"):
        from tests import baresip

        return getattr(baresip, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
