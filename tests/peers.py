"""Drivers for real-peer tests and benches: the switch as a subprocess, SIPp and baresip.

Everything binds to loopback on free ports, lives in a temp folder, and is bounded in time.
Used by ``tests/test_register_peers.py`` (as ``peers``) and ``bench/register.py`` (as ``tests.peers``).
"""

from __future__ import annotations

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


DEBIAN_PACKAGES = {"sipp": "sip-tester", "baresip": "baresip-core"}


def missing_tools(*tools: str) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


def require_tools(*tools: str) -> None:
    """Skip the calling test when a peer tool is missing; fail instead when ``CI`` is set."""
    import pytest

    missing = missing_tools(*tools)
    if not missing:
        return
    packages = " ".join(DEBIAN_PACKAGES.get(t, t) for t in missing)
    msg = f"peer tool(s) not installed: {', '.join(missing)} (apt-get install {packages})"
    if "CI" in os.environ:
        pytest.fail(f"{msg}; CI is set, so this is a failure, not a skip", pytrace=False)
    pytest.skip(msg)


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
    """A random loopback port free for the asked kinds (never 5060, which a real switch may own)."""
    kinds = [k for k, want in ((socket.SOCK_DGRAM, udp), (socket.SOCK_STREAM, tcp)) if want]
    for _ in range(500):
        p = random.randrange(20000, 60000)
        if even:
            p &= ~1
        if _bindable(p, kinds) and (not even or _bindable(p + 1, [socket.SOCK_DGRAM])):
            return p
    raise RuntimeError("no free loopback port")


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
    TLS gets its own. Use as a context manager or call :meth:`start` / :meth:`stop`.
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
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.users = list(users)
        self.transports = list(transports)
        self.log_level = log_level
        self.domain = domain
        self.python = list(python) if python else [sys.executable]
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
        reg = {"min_expires": 60, "max_expires": 7200, "default_expires": 3600, **(registrar or {})}
        lines += ["", "[registrar]"] + [f"{k} = {json.dumps(v)}" for k, v in reg.items()]
        self.config_path.write_text("\n".join(lines) + "\n")

    @property
    def target(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

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
    result = SippResult(rc, out, time.monotonic() - t0, timed_out=timed_out)
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


# ---------------------------------------------------------------- baresip

BARESIP_CONFIG = """\
# headless baresip for the register tests: no audio device, control over ctrl_tcp only
poll_method		epoll
sip_listen		{sip_listen}
call_max_calls		1
rtp_ports		{rtp_lo}-{rtp_hi}
dns_server		127.0.0.1:53
net_interface		127.0.0.1
module_path		/usr/lib/baresip/modules
module			g711.so
module_tmp		uuid.so
module_tmp		account.so
module_app		menu.so
module_app		ctrl_tcp.so
ctrl_tcp_listen		127.0.0.1:{ctrl_port}
statmode_default	off
"""


class Baresip:
    """Headless baresip in a temp HOME (config in HOME/.baresip), driven over ctrl_tcp."""

    def __init__(self, home: Path, aor_host: str, aor_port: int, user: str, password: str,
                 *, transport: str = "udp", regint: int = 600, timeout: float = 30.0) -> None:  # fmt: skip
        self.home = Path(home)
        self.conf = self.home / ".baresip"
        self.conf.mkdir(parents=True, exist_ok=True)
        # baresip also opens TCP on the SIP port and TLS on port+1
        for _ in range(100):
            p = free_port()
            if _bindable(p + 1, [socket.SOCK_STREAM]):
                break
        self.sip_port = p
        self.ctrl_port = free_port(udp=False)
        rtp_lo = random.randrange(40000, 59000, 100)
        (self.conf / "config").write_text(
            BARESIP_CONFIG.format(
                sip_listen=f"{LOOPBACK}:{p}", rtp_lo=rtp_lo, rtp_hi=rtp_lo + 99, ctrl_port=self.ctrl_port
            )
        )
        (self.conf / "accounts").write_text(
            f"<sip:{user}@{aor_host}:{aor_port};transport={transport}>;auth_pass={password};regint={regint};"
            "answermode=manual\n"
        )
        (self.conf / "contacts").write_text("")
        self.timeout = timeout
        self.log_path = self.home / "baresip.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.buf = b""
        self.events: list[dict[str, Any]] = []
        self.responses: dict[str, dict[str, Any]] = {}
        self._token = 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> Baresip:
        env = dict(os.environ, HOME=str(self.home))
        with self.log_path.open("wb") as logf:
            # -t: baresip quits by itself shortly after our bound, whatever happens to this process
            self.proc = subprocess.Popen(
                ["baresip", "-f", str(self.conf), "-t", str(int(self.timeout) + 5)],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, env=env,
                cwd=self.home, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                self.sock = socket.create_connection((LOOPBACK, self.ctrl_port), timeout=1)
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"baresip control port never opened:\n{self.log()[-2000:]}") from None
                time.sleep(0.1)
        self.sock.settimeout(0.1)
        return self

    def _send(self, command: str, params: str | None = None) -> str:
        assert self.sock is not None
        self._token += 1
        tok = f"t{self._token}"
        msg: dict[str, Any] = {"command": command, "token": tok}
        if params is not None:
            msg["params"] = params
        data = json.dumps(msg).encode()
        self.sock.sendall(str(len(data)).encode() + b":" + data + b",")
        return tok

    def _pump(self, seconds: float) -> None:
        assert self.sock is not None
        end = time.monotonic() + max(0.0, seconds)
        while True:
            try:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("baresip closed the control connection")
                self.buf += chunk
            except TimeoutError:
                pass
            while b":" in self.buf:  # netstrings
                head, rest = self.buf.split(b":", 1)
                if not head.isdigit():
                    self.buf = b""
                    break
                n = int(head)
                if len(rest) < n + 1:
                    break
                msg = json.loads(rest[:n])
                self.buf = rest[n + 1 :]
                if msg.get("event"):
                    self.events.append(msg)
                elif msg.get("response"):
                    self.responses[msg.get("token", "")] = msg
            if time.monotonic() >= end:
                return

    def command(self, command: str, params: str | None = None, wait: float = 2.0) -> dict[str, Any] | None:
        tok = self._send(command, params)
        end = time.monotonic() + wait
        while tok not in self.responses and time.monotonic() < end:
            self._pump(0.1)
        return self.responses.pop(tok, None)

    def wait_registered(self, timeout: float = 10.0) -> tuple[bool | None, str]:
        """REGISTER_OK / REGISTER_FAIL event, or 'reginfo' polling (the first event may predate us)."""
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.events:
                if ev.get("type") in ("REGISTER_OK", "REGISTER_FAIL"):
                    return ev["type"] == "REGISTER_OK", str(ev.get("param") or ev["type"])
            r = self.command("reginfo", wait=0.5)
            data = str((r or {}).get("data") or "")
            if "\x1b[32mOK" in data or re.search(r"\bOK\b", data):
                return True, "reginfo: OK"
            if "ERR" in data:
                return False, "reginfo: " + data.strip().replace("\x1b", "")
            if time.monotonic() >= deadline:
                return None, "timeout; reginfo: " + data.strip().replace("\x1b", "")
            self._pump(0.2)

    def quit(self, timeout: float = 8.0) -> int | None:
        """Ask baresip to quit over ctrl_tcp (it unregisters first); returns its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None and self.sock is not None:
            try:
                self._send("quit")
                self._pump(0.2)
            except OSError:
                pass
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        finally:
            if self.sock is not None:
                self.sock.close()
                self.sock = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
