"""Test helpers for external tools (espeak-ng, sox, ...)."""

from __future__ import annotations

import os
import shutil

import pytest

DEBIAN_PACKAGES = {"sipp": "sip-tester", "baresip": "baresip-core", "espeak-ng": "espeak-ng", "sox": "sox"}


def require_tool(name: str) -> str:
    """The tool's path; skip the calling test when it is missing, or fail when ``CI`` is set."""
    path = shutil.which(name)
    if path is not None:
        return path
    msg = f"{name} not installed (apt-get install {DEBIAN_PACKAGES.get(name, name)}, or python3 dev.py test)"
    if os.environ.get("CI"):
        pytest.fail(f"{msg}; CI is set, so this is a failure, not a skip", pytrace=False)
    pytest.skip(msg)
