#!/usr/bin/env python3
"""Set-up and run, on a fresh Debian 12 with only python3 (stdlib only, run as root to install).

python3 dev.py run    # install what is missing, start the switch on the bundled demo config
python3 dev.py test   # install what is missing (incl. SIPp, baresip, espeak-ng, sox), run pytest, ruff, mypy
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"
DEMO = ROOT / "softswitch" / "demo" / "switch.toml"
TEST_TOOLS = {"sipp": "sip-tester", "baresip": "baresip-core", "espeak-ng": "espeak-ng", "sox": "sox"}


def say(msg: str) -> None:
    print(f"[dev] {msg}", flush=True)


def sh(*cmd: str | Path, check: bool = True, env: dict[str, str] | None = None) -> int:
    return subprocess.run([str(c) for c in cmd], check=check, env=env).returncode


_apt_updated = False


def apt_install(packages: list[str]) -> None:
    global _apt_updated
    if not packages:
        return
    if os.geteuid() != 0:
        sys.exit(f"[dev] missing Debian packages {' '.join(packages)}: run as root, or install them yourself")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if not _apt_updated:
        say("apt-get update")
        sh("apt-get", "update", "-qq", env=env)
        _apt_updated = True
    say(f"apt-get install {' '.join(packages)}")
    sh("apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages, env=env)


def ensure_venv(dev: bool) -> None:
    if not PY.exists():
        probe = subprocess.run([sys.executable, "-c", "import ensurepip, venv"], capture_output=True)
        if probe.returncode != 0:
            apt_install(["python3-venv"])
        say(f"creating {VENV}")
        sh(sys.executable, "-m", "venv", VENV)
    spec = ".[dev]" if dev else "."
    stamp = VENV / f".installed-{'dev' if dev else 'run'}"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    dev_stamp = VENV / ".installed-dev"  # a dev install also serves `run`
    if dev_stamp.exists() and dev_stamp.read_text() == digest:
        return
    if not stamp.exists() or stamp.read_text() != digest:
        say(f"pip install -e {spec}")
        sh(PY, "-m", "pip", "install", "-q", "--upgrade", "pip")
        sh(PY, "-m", "pip", "install", "-q", "-e", f"{ROOT}{spec[1:]}")
        stamp.write_text(digest)


def ensure_test_tools() -> None:
    missing = [pkg for tool, pkg in TEST_TOOLS.items() if shutil.which(tool) is None]
    if missing:
        if os.geteuid() == 0:
            apt_install(missing)
        else:
            say(f"warning: {', '.join(missing)} missing and not root; the peer tests will fail")


def run() -> int:
    ensure_venv(dev=False)
    args = sys.argv[2:] or ["-c", str(DEMO)]
    if not sys.argv[2:]:  # the demo hotline needs its demo brokerage accounts (idempotent)
        sh(VENV / "bin" / "softswitch", "broker", "seed", "-c", DEMO, check=False)
    os.execv(str(VENV / "bin" / "softswitch"), ["softswitch", "run", *args])
    return 0


def test() -> int:
    ensure_venv(dev=True)
    ensure_test_tools()
    bin_ = VENV / "bin"
    os.chdir(ROOT)
    results = {
        "pytest": sh(bin_ / "pytest", "-q", *sys.argv[2:], check=False),
        "ruff check": sh(bin_ / "ruff", "check", ".", check=False),
        "ruff format": sh(bin_ / "ruff", "format", "--check", ".", check=False),
        "mypy": sh(bin_ / "mypy", check=False),
    }
    for name, rc in results.items():
        say(f"{name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'}")
    return 0 if all(rc == 0 for rc in results.values()) else 1


if __name__ == "__main__":
    commands = {"run": run, "test": test}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    sys.exit(commands[sys.argv[1]]())
