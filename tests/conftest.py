"""Session set-up shared by every test: the compile cache of the generated projects' host builds (tests/cc_cache.py).

The cache directory lives for one pytest run; with pytest-xdist the controller creates it before it starts the
workers, which inherit ``CC`` and the directory, so a kernel compiled by one worker is a hit for the other.
``MCC_TEST_CC_CACHE=off`` runs every compile for real.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

WRAPPER = Path(__file__).resolve().parent / "cc_cache.py"
_OWNED: list[Path] = []


def pytest_configure(config: pytest.Config) -> None:
    current = os.environ.get("MCC_TEST_CC_CACHE")
    if current == "off" or (current and Path(current).is_dir()):  # off, or set up by the xdist controller
        return
    cache = Path(tempfile.mkdtemp(prefix="mcc-test-cc-cache-"))
    launcher = _launcher()
    if os.environ.get("CC") != str(launcher):  # (a CC left over from an outer session keeps its real compiler)
        os.environ["MCC_TEST_CC_REAL"] = os.environ.get("CC") or "cc"
    os.environ["MCC_TEST_CC_CACHE"] = str(cache)
    os.environ["CC"] = str(launcher)
    _OWNED.append(cache)


def _launcher() -> Path:
    """``cc`` running the wrapper, at a path fixed per checkout and interpreter (the QEMU plugin's own cache in
    ~/.cache/mcc is keyed by the compiler's path, so a new path every run would leave a new plugin build each time)."""
    text = f'#!/bin/sh\nexec "{sys.executable}" -S -I "{WRAPPER}" "$@"\n'
    tag = hashlib.sha256(text.encode()).hexdigest()[:12]
    launcher = Path(tempfile.gettempdir()) / f"mcc-test-cc-{tag}" / "cc"
    if not launcher.is_file() or launcher.read_text() != text:
        launcher.parent.mkdir(exist_ok=True)
        tmp = launcher.with_name(f"cc.{os.getpid()}")
        tmp.write_text(text)
        tmp.chmod(0o755)
        os.replace(tmp, launcher)
    return launcher


def pytest_unconfigure(config: pytest.Config) -> None:
    for cache in _OWNED:
        shutil.rmtree(cache, ignore_errors=True)
    _OWNED.clear()
