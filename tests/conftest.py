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


SLOW_FIRST = (
    "tests/nas/test_search_cli.py::test_search_end_to_end_and_resume",
    "tests/emulate/test_emulate.py::test_patched_and_streamed_mcunet",
    "tests/test_patch_stage.py::test_automatic_choice_is_never_worse_than_per_layer",
    "tests/test_models_onnx.py::test_generated_c_cross_compiles_warning_free",
    "tests/nas/test_supernet.py::test_ddp_two_processes_match_one",
    "tests/nas/test_cost_exact.py::",
    "tests/emulate/test_emulate.py::test_vww_on_cortex_m7",
    "tests/test_guard_and_analyze.py::test_guard_on_real_models",
    "tests/test_models_tflite.py::",
    "tests/test_models_onnx.py::",
    "tests/emulate/",
    "tests/backend/test_c_depthwise.py::test_dsp_path_on_emulated_cortex_m",
    "tests/backend/test_c_depthwise.py::test_random_fast_depthwise",
    "tests/test_compare.py::test_real_model_bit_exact_with_tflm_and_tvm",
    "tests/test_analyze.py::test_real_model_table",
)
"""Node-id prefixes of the longest tests (measured with ``--durations``), longest first: pytest-xdist hands out tests
in collection order, so a long test collected last would run alone at the end while the other worker idles. Only the
order changes; a prefix that no longer matches costs nothing but the head start."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        return next((k for k, p in enumerate(SLOW_FIRST) if item.nodeid.startswith(p)), len(SLOW_FIRST))

    items.sort(key=rank)  # stable: the rest keep their order
