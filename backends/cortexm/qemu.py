"""Running an emulation image in QEMU and reading back what it wrote.

QEMU runs in a fresh temporary directory with semihosting on (``target=native``: the guest's file calls act on
the host files of that directory) and ``-icount shift=0`` (one instruction = one nanosecond of virtual time, so
runs are deterministic). The image reads ``in.bin`` and writes ``out.bin``, ``marks.bin`` and ``stats.bin``
(see ``runtime_c/cortexm/mcc_emu_main.c``); the counting plugin, when given, writes ``counts.txt``.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from backends.cortexm.boards import Board
from compiler.errors import MccError

QEMU = "qemu-system-arm"
HOOK_SYMBOL = "mcc_emu_layer_hook"
MARK_RUN_BEGIN = 0xFFFF0000
MARK_RUN_END = 0xFFFF0001
STATS_MAGIC = 0x4543434D
STATS_FIELDS = ("magic", "version", "samples", "stack_region_bytes", "stack_inference_bytes",
                "stack_program_bytes", "systick")
EXIT_MESSAGES = {
    2: "the emulated program could not open its input file",
    3: "the input file is not a whole number of samples",
    4: "the model returned an error",
    5: "a semihosting file transfer failed",
    6: "too many layer marks in one inference (more than 2048)",
    7: "stack overflow: the inference used the whole stack region",
    8: "the emulated CPU took a fault (bad memory access, undefined instruction or stack overflow)",
}


class EmulationError(MccError):
    """QEMU is missing, failed, timed out, or the emulated program reported an error."""


class PluginLoadError(EmulationError):
    """QEMU could not load the counting plugin (the caller may fall back to SysTick counting)."""


@dataclass(frozen=True)
class Mark:
    """One layer mark as the emulated program recorded it."""

    id: int
    systick: int


@dataclass
class RawRun:
    """What one QEMU run produced."""

    output: bytes
    marks: list[list[Mark]]
    """The marks of each inference, from its RUN_BEGIN to its RUN_END mark."""
    counts: list[list[int]] | None
    """Plugin instruction counts at each mark, grouped like ``marks`` (None without the plugin)."""
    program_instructions: int | None
    """Instructions from reset to exit (plugin only)."""
    stats: dict[str, int]
    seconds: float
    command: list[str]


def hook_address(elf: Path) -> int:
    """Address of the first instruction of the layer hook (Thumb bit cleared)."""
    from elftools.elf.elffile import ELFFile

    with elf.open("rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        syms = symtab.get_symbol_by_name(HOOK_SYMBOL) if symtab is not None else None  # type: ignore[attr-defined]
        if not syms:
            raise EmulationError(f"{elf}: no symbol {HOOK_SYMBOL}")
        return int(syms[0]["st_value"]) & ~1


def check_qemu() -> None:
    """A clear error when QEMU is not installed."""
    if shutil.which(QEMU) is None:
        raise EmulationError(f"cannot emulate: {QEMU} is not installed (Debian: apt-get install qemu-system-arm)")


def qemu_command(board: Board, elf: Path, plugin: Path | None = None, counts: Path | None = None) -> list[str]:
    """The QEMU command line that runs ``elf`` (with the counting plugin when given)."""
    check_qemu()
    cmd = [QEMU, "-M", board.machine, "-nographic", "-monitor", "none", "-serial", "none",
           "-semihosting-config", "enable=on,target=native", "-icount", "shift=0"]
    if plugin is not None and counts is not None:
        cmd += ["-plugin", f"{plugin},mark={hook_address(elf):#x},out={counts}"]
    return [*cmd, "-kernel", str(elf)]


def run_image(board: Board, elf: Path, inputs: bytes, *, plugin: Path | None = None,
              timeout: float = 600.0) -> RawRun:
    """Run ``elf`` on the concatenated raw samples ``inputs``; raises :class:`EmulationError` on any failure."""
    with tempfile.TemporaryDirectory(prefix="mcc-emu-") as tmp:
        work = Path(tmp)
        (work / "in.bin").write_bytes(inputs)
        counts_path = work / "counts.txt"
        cmd = qemu_command(board, elf, plugin, counts_path if plugin is not None else None)
        t0 = time.perf_counter()
        try:
            r = subprocess.run(cmd, cwd=work, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired:
            raise EmulationError(f"QEMU ({board.machine}) did not finish within {timeout:.0f} s") from None
        seconds = time.perf_counter() - t0
        text = (r.stderr + r.stdout).strip()
        if r.returncode != 0:
            if plugin is not None and "plugin" in text.lower() and not (work / "stats.bin").exists():
                raise PluginLoadError(f"QEMU could not load the counting plugin: {_last_line(text)}")
            why = EXIT_MESSAGES.get(r.returncode, f"QEMU exited with status {r.returncode}")
            raise EmulationError(f"emulation on {board.machine} failed: {why}" +
                                 (f" ({_last_line(text)})" if text else ""))
        stats = _read_stats(work / "stats.bin")
        marks = _read_marks(work / "marks.bin")
        counts, total = _read_counts(counts_path) if plugin is not None else (None, None)
        output = (work / "out.bin").read_bytes()
    grouped = _group(marks)
    if len(grouped) != stats["samples"]:
        raise EmulationError(f"the emulated program ran {stats['samples']} inferences but recorded marks for "
                             f"{len(grouped)}")
    grouped_counts = None
    if counts is not None:
        if len(counts) != len(marks):
            raise EmulationError(f"the counting plugin saw {len(counts)} marks, the program recorded {len(marks)}")
        it = iter(counts)
        grouped_counts = [[next(it) for _ in g] for g in grouped]
    return RawRun(output, grouped, grouped_counts, total, stats, seconds, cmd)


def _last_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def _read_stats(path: Path) -> dict[str, int]:
    if not path.is_file():
        raise EmulationError("the emulated program exited without writing its statistics")
    data = path.read_bytes()
    values = struct.unpack(f"<{len(STATS_FIELDS)}I", data[:4 * len(STATS_FIELDS)])
    stats = dict(zip(STATS_FIELDS, values, strict=True))
    if stats["magic"] != STATS_MAGIC or stats["version"] != 1:
        raise EmulationError("the emulated program wrote statistics in an unknown format")
    return stats


def _read_marks(path: Path) -> list[Mark]:
    data = path.read_bytes()
    return [Mark(i, s) for i, s in struct.iter_unpack("<II", data)]


def _group(marks: list[Mark]) -> list[list[Mark]]:
    groups: list[list[Mark]] = []
    for m in marks:
        if m.id == MARK_RUN_BEGIN:
            groups.append([])
        if not groups:
            raise EmulationError("marks recorded outside an inference")
        groups[-1].append(m)
    for g in groups:
        if g[-1].id != MARK_RUN_END:
            raise EmulationError("an inference's marks do not end with its RUN_END mark")
    return groups


def _read_counts(path: Path) -> tuple[list[int], int]:
    if not path.is_file():
        raise EmulationError("the counting plugin wrote no counts")
    counts: list[int] = []
    total = None
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "mark":
            counts.append(int(value))
        elif key == "total":
            total = int(value)
        elif key == "overflow":
            raise EmulationError("the counting plugin ran out of memory for marks")
    if total is None:
        raise EmulationError("the counting plugin's output has no total")
    return counts, total
