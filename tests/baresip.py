"""Headless baresip (Debian 1.0.0) driven over its ctrl_tcp module, for the real-peer tests.

No sound card: with ``mic_wav`` the microphone is that WAV (aufile), the speaker ALSA's "null" PCM,
and the sndfile filter dumps what was sent (``dump-*-enc.wav``) and heard (``dump-*-dec.wav``)
into ``HOME/audio``. Everything binds to loopback; baresip gets ``-t`` as a backstop.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.peers import LOOPBACK, _bindable, free_port

BARESIP_CONFIG = """\
# headless baresip for the peer tests: no audio device, control over ctrl_tcp only
poll_method		epoll
sip_listen		{sip_listen}
call_max_calls		1
call_local_timeout	{call_timeout}
rtp_ports		{rtp_lo}-{rtp_hi}
dns_server		127.0.0.1:53
net_interface		127.0.0.1
module_path		/usr/lib/baresip/modules
module			g711.so
{audio}module_tmp		uuid.so
module_tmp		account.so
module_app		menu.so
module_app		ctrl_tcp.so
ctrl_tcp_listen		127.0.0.1:{ctrl_port}
statmode_default	off
"""

AUDIO_CONFIG = """\
module			sndfile.so
module			alsa.so
module			aufile.so
audio_player		alsa,null
audio_source		aufile,{wav}
audio_alert		alsa,null
ausrc_srate		8000
auplay_srate		8000
ausrc_channels		1
auplay_channels		1
ausrc_format		s16
auplay_format		s16
auenc_format		s16
audec_format		s16
audio_buffer		20-160
rtcp_mux		no
jitter_buffer_delay	5-10
snd_path		{snd_path}
"""


class Baresip:
    """Headless baresip in a temp HOME (config in HOME/.baresip), driven over ctrl_tcp.

    ``mic_wav`` (8 kHz mono 16-bit, long enough for the whole call: baresip 1.0.0 hangs up when
    its aufile source ends) turns audio on; ``answer`` makes it auto-answer incoming calls.
    """

    def __init__(self, home: Path, aor_host: str, aor_port: int, user: str, password: str,
                 *, transport: str = "udp", regint: int = 600, timeout: float = 30.0,
                 answer: bool = False, mic_wav: Path | None = None) -> None:  # fmt: skip
        self.home = Path(home)
        self.conf = self.home / ".baresip"
        self.conf.mkdir(parents=True, exist_ok=True)
        self.audio_dir = self.home / "audio"
        # baresip also opens TCP on the SIP port and TLS on port+1
        for _ in range(100):
            p = free_port()
            if _bindable(p + 1, [socket.SOCK_STREAM]):
                break
        self.sip_port = p
        self.ctrl_port = free_port(udp=False)
        self.rtp_lo = random.randrange(40000, 59000, 100)
        audio = ""
        if mic_wav is not None:
            self.audio_dir.mkdir(parents=True, exist_ok=True)
            audio = AUDIO_CONFIG.format(wav=Path(mic_wav).resolve(), snd_path=self.audio_dir)
        (self.conf / "config").write_text(
            BARESIP_CONFIG.format(
                sip_listen=f"{LOOPBACK}:{p}",
                rtp_lo=self.rtp_lo,
                rtp_hi=self.rtp_lo + 99,
                ctrl_port=self.ctrl_port,
                call_timeout=int(timeout),
                audio=audio,
            )
        )
        params = [f"auth_pass={password}", f"regint={regint}", f"answermode={'auto' if answer else 'manual'}"]
        if mic_wav is not None:
            params += ["audio_codecs=PCMU,PCMA", "ptime=20"]
        (self.conf / "accounts").write_text(
            f"<sip:{user}@{aor_host}:{aor_port};transport={transport}>;" + ";".join(params) + "\n"
        )
        (self.conf / "contacts").write_text("")
        self.aor_host, self.aor_port, self.transport = aor_host, aor_port, transport
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
                    msg["at"] = time.monotonic()
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

    # ---- calls -------------------------------------------------------------
    def wait_event(self, types: set[str], timeout: float, start: int = 0) -> dict[str, Any] | None:
        """The first event of one of ``types`` at index >= ``start``, or None after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.events[start:]:
                if ev.get("type") in types:
                    return ev
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._pump(min(0.1, left))

    def dial(self, number: str) -> int:
        """Dial ``number`` at the registrar; returns the event index to wait from."""
        start = len(self.events)
        uri = number if number.startswith("sip:") else (
            f"sip:{number}@{self.aor_host}:{self.aor_port};transport={self.transport}"
        )  # fmt: skip
        self._send("dial", uri)
        return start

    def hangup(self) -> None:
        self._send("hangup")

    def recordings(self) -> dict[str, list[Path]]:
        """The sndfile dumps: {"sent": [...enc.wav], "received": [...dec.wav]}."""
        out: dict[str, list[Path]] = {"sent": [], "received": []}
        if self.audio_dir.is_dir():
            for p in sorted(self.audio_dir.glob("dump-*.wav")):
                out["received" if p.name.endswith("-dec.wav") else "sent"].append(p)
        return out

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
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
