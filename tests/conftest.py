"""Session set-up shared by every test: the compile cache of the generated projects' builds (tests/cc_cache.py).

``CC`` (the host builds' compiler) becomes a launcher of the cache, and a directory holding an
``arm-none-eabi-gcc`` launcher goes first on ``PATH`` (the cross builds and the emulation images name that
compiler; the launcher exists only where the real one is installed, so the tests that need it still skip without
it). The cache directory lives for one pytest run; with pytest-xdist the controller creates it before it starts the
workers, which inherit the environment, so a kernel compiled by one worker is a hit for the other.
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
CROSS = "arm-none-eabi-gcc"
_OWNED: list[Path] = []


def pytest_configure(config: pytest.Config) -> None:
    current = os.environ.get("MCC_TEST_CC_CACHE")
    if current == "off" or (current and Path(current).is_dir()):  # off, or set up by the xdist controller
        return
    wanted = os.environ.get("CC") or "cc"
    host = shutil.which(wanted) if "mcc-test-cc-" not in wanted else shutil.which("cc")
    cross = shutil.which(CROSS)
    cache = Path(tempfile.mkdtemp(prefix="mcc-test-cc-cache-"))
    os.environ["MCC_TEST_CC_CACHE"] = str(cache)
    _OWNED.append(cache)
    if host is not None:
        os.environ["CC"] = str(_launcher("cc", host))
    if cross is not None and "mcc-test-cc-" not in cross:
        os.environ["PATH"] = f"{_launcher(CROSS, cross).parent}{os.pathsep}{os.environ.get('PATH', '')}"


def _launcher(name: str, real: str) -> Path:
    """``name`` running the wrapper in front of ``real``, at a path fixed per checkout, interpreter and compiler
    (the QEMU plugin's cache in ~/.cache/mcc is keyed by the compiler's path: a new path every run would leave a new
    plugin build each time)."""
    text = f'#!/bin/sh\nMCC_TEST_CC_REAL="{real}" exec "{sys.executable}" -S -I "{WRAPPER}" "$@"\n'
    tag = hashlib.sha256(text.encode()).hexdigest()[:12]
    launcher = Path(tempfile.gettempdir()) / f"mcc-test-cc-{tag}" / name
    if not launcher.is_file() or launcher.read_text() != text:
        launcher.parent.mkdir(exist_ok=True)
        tmp = launcher.with_name(f"{name}.{os.getpid()}")
        tmp.write_text(text)
        tmp.chmod(0o755)
        os.replace(tmp, launcher)
    return launcher


def pytest_unconfigure(config: pytest.Config) -> None:
    for cache in _OWNED:
        shutil.rmtree(cache, ignore_errors=True)
    _OWNED.clear()
