"""The running switch's local control socket: a Unix socket speaking one JSON object per line.

Requests and answers::

    {"cmd": "agent", "agent": "2001", "action": "login"}      -> {"ok": true, "state": "available"}
    {"cmd": "agent", "agent": "2001", "action": "pause", "reason": "lunch"}
    {"cmd": "status"}                                          -> {"ok": true, "status": {...}}
    anything wrong                                             -> {"ok": false, "error": "..."}

The socket file is created with mode 0600 under ``data_dir``: only the switch's user (and root) may
steer agents. ``softswitch agent ...`` and ``softswitch agents`` are its clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .service import AcdService

log = logging.getLogger("softswitch.control")

ACTIONS = ("login", "logout", "pause", "unpause")
MAX_LINE = 64 * 1024


class ControlError(Exception):
    """The control socket could not be reached or refused the request."""


class ControlServer:
    def __init__(self, path: Path, acd: AcdService) -> None:
        self.path = path
        self.acd = acd
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_socket():
            self.path.unlink()  # left by a switch that did not stop cleanly
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._client, path=str(self.path), limit=MAX_LINE)
        finally:
            os.umask(old)
        log.info("control socket %s", self.path)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(OSError):
            self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(json.dumps(self.handle_line(line)).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, ValueError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    def handle_line(self, line: bytes) -> dict[str, Any]:
        """Answer one request line (never raises)."""
        try:
            req = json.loads(line)
        except ValueError:
            return {"ok": False, "error": "not JSON"}
        if not isinstance(req, dict):
            return {"ok": False, "error": "expected a JSON object"}
        try:
            return self._handle(req)
        except KeyError as e:
            return {"ok": False, "error": f"unknown {e.args[0]!r}" if e.args else "unknown name"}
        except Exception as e:  # a bad request never takes the switch down
            log.exception("control request %r failed", req)
            return {"ok": False, "error": str(e)}

    def _handle(self, req: dict[str, Any]) -> dict[str, Any]:
        cmd = req.get("cmd")
        if cmd == "status":
            return {"ok": True, "status": self.acd.snapshot()}
        if cmd == "agent":
            agent, action = req.get("agent"), req.get("action")
            if not isinstance(agent, str) or agent not in self.acd.config.agents:
                return {"ok": False, "error": f"no agent {agent!r} in the config"}
            if action not in ACTIONS:
                return {
                    "ok": False,
                    "error": f"unknown action {action!r}; expected one of: {', '.join(ACTIONS)}",
                }
            reason = req.get("reason", "")
            self.acd.agent_command(agent, action, reason if isinstance(reason, str) else "")
            return {"ok": True, "state": self.acd.core.agent_state(agent).value}
        return {"ok": False, "error": f"unknown command {cmd!r}; expected agent or status"}


def control_request(path: Path, request: dict[str, Any], *, timeout: float = 5.0) -> dict[str, Any]:
    """Send one request to a running switch and return its answer (ControlError when unreachable)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(path))
            s.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as e:
        raise ControlError(f"cannot reach the switch at {path}: {e.strerror or e} (is it running?)") from None
    try:
        answer = json.loads(data)
    except ValueError:
        raise ControlError(f"unreadable answer from {path}") from None
    if not isinstance(answer, dict):
        raise ControlError(f"unreadable answer from {path}")
    return answer
