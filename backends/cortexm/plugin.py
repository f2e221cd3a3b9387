"""The instruction-counting QEMU plugin: built from ``insn_count_plugin.c`` with the host C compiler on first use.

The shared object is cached under ``$XDG_CACHE_HOME/mcc`` (default ``~/.cache/mcc``), named by a hash of its
source and the compiler, so edits rebuild it and concurrent users never see a half-written file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

PLUGIN_SOURCE = Path(__file__).resolve().parent / "insn_count_plugin.c"


@dataclass(frozen=True)
class PluginBuild:
    """The plugin's path, or why it could not be built."""

    path: Path | None
    reason: str = ""


def cache_dir() -> Path:
    """Where mcc caches host-built helpers."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mcc"


def build_plugin() -> PluginBuild:
    """Build (or find cached) the counting plugin; never raises for a missing or failing host compiler."""
    wanted = os.environ.get("CC")
    cc = shutil.which(wanted) if wanted else shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return PluginBuild(None, f"no host C compiler ({wanted or 'cc/gcc'}) to build the QEMU counting plugin")
    source = PLUGIN_SOURCE.read_bytes()
    digest = hashlib.sha256(source + cc.encode()).hexdigest()[:16]
    target = cache_dir() / f"mcc_insn_count-{digest}.so"
    if target.is_file():
        return PluginBuild(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
    except OSError as e:
        return PluginBuild(None, f"cannot write the plugin cache {target.parent}: {e.strerror}")
    r = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-fvisibility=hidden", "-o", tmp,
                        str(PLUGIN_SOURCE)], capture_output=True, text=True)
    if r.returncode != 0:
        Path(tmp).unlink(missing_ok=True)
        first = (r.stderr.strip().splitlines() or ["unknown error"])[0]
        return PluginBuild(None, f"building the QEMU counting plugin failed: {first}")
    os.replace(tmp, target)
    return PluginBuild(target)
