"""Run a generated project on an emulated Cortex-M and measure it: outputs, instruction counts, flash, RAM, stack.

Counting: with the TCG plugin (``counting="plugin"``), the instructions between two marks are exact — the plugin
adds every executed translation block's instruction count and records the running total each time the layer hook
is entered. Each segment therefore also contains the hook's own instructions once (the call, the hook body and
its return: 11 instructions). Without the plugin (``counting="systick"``), the hook reads SysTick, which QEMU
with ``-icount shift=0`` decrements once per 40 instructions on these boards, so each segment is known to ±40.

Segments of one inference, between consecutive marks: ``input copy`` (from the harness's RUN_BEGIN mark to
``MCC_LAYER_HOOK(0)``: the call into ``NAME_run``; inputs that live in the arena are staged in place through the
zero-copy ``NAME_input_X`` before RUN_BEGIN, so nothing is copied there), one per layer that
has code, and ``output copy`` (the last layer's hook to RUN_END). The layers add up to ``layer_instructions``
exactly; all segments add up to ``run_instructions`` exactly.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from backends.c.build import run_host
from backends.cortexm.boards import Board, c_opt_flag, get_board
from backends.cortexm.firmware import Firmware, build_firmware
from backends.cortexm.footprint import Footprint, StackBound, elf_footprint, stack_bound
from backends.cortexm.plugin import build_plugin
from backends.cortexm.qemu import (
    MARK_RUN_BEGIN,
    MARK_RUN_END,
    EmulationError,
    Mark,
    PluginLoadError,
    RawRun,
    check_qemu,
    run_image,
)
from compiler.errors import MccError

SYSTICK_INSTRUCTIONS_PER_TICK = 40
HOOK_NOTE = "each segment includes one layer-hook call (11 instructions)"
COUNTING_METHODS = ("auto", "plugin", "systick")


@dataclass
class Segment:
    """Instructions between two consecutive marks of one inference."""

    label: str
    """``input copy``, ``output copy`` or the layer's name."""
    layer: int | None
    """1-based row of report.json's ``layers`` (None for the copies)."""
    instructions: int


@dataclass
class LayerRow:
    """One row of report.json's ``layers`` with its measured instructions (None when the layer has no code)."""

    index: int
    name: str
    op: str
    macs: int
    instructions: int | None

    @property
    def per_mac(self) -> float | None:
        """Instructions per multiply-accumulate (None without MACs or code)."""
        return self.instructions / self.macs if self.instructions is not None and self.macs else None


@dataclass
class EmulationResult:
    """Everything one emulation run measured."""

    project: str
    name: str
    target: str
    """The emulated part as requested (``cortex-m7``, ``stm32h743``)."""
    board: Board
    opt: str
    counting: str
    """``plugin`` (exact) or ``systick`` (±40 instructions per segment)."""
    counting_note: str
    samples: int
    outputs: list[np.ndarray]
    """Raw C outputs, ``[N, *c_shape]`` each."""
    run_instructions: list[int]
    """Per inference: RUN_BEGIN to RUN_END (the whole ``NAME_run`` call)."""
    layer_instructions: list[int]
    """Per inference: ``MCC_LAYER_HOOK(0)`` to the last layer's hook (the sum of the layer rows)."""
    segments: list[Segment]
    """The first inference's segments."""
    layers: list[LayerRow]
    """The first inference, by row of report.json's ``layers``."""
    program_instructions: int | None
    """Reset to exit, all inferences and harness work included (plugin only)."""
    macs: int
    """The model's multiply-accumulates (per-layer inference; patch recompute not counted)."""
    executed_macs: int
    """Those the compiled program performs: ``macs`` plus the recompute of patch-based inference."""
    arena_bytes: int
    footprint: Footprint
    stack_bytes: int
    """Deepest stack of one inference, measured by painting (from the harness's call of ``NAME_run``)."""
    stack_program_bytes: int
    stack_region_bytes: int
    stack_bound: StackBound
    flash_budget: int
    sram_budget: int
    seconds: float
    elf: Path
    host_identical: bool | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def instructions(self) -> int:
        """Instructions of the first inference's ``NAME_run`` call."""
        return self.run_instructions[0]

    @property
    def per_mac(self) -> float | None:
        """Instructions of one inference per multiply-accumulate of the model (patch recompute not counted, so a
        patched program is not flattered by the MACs it repeats)."""
        return self.instructions / self.macs if self.macs else None

    def summary(self) -> dict[str, Any]:
        """The figures that go into report.json's ``emulation`` section."""
        return {
            "target": self.target, "machine": self.board.machine, "c_opt": self.opt,
            "counting": self.counting, "instructions": self.instructions,
            "layer_instructions": self.layer_instructions[0],
            "instructions_per_mac": _round(self.per_mac), "flash_bytes": self.footprint.flash_bytes,
            "static_ram_bytes": self.footprint.static_ram_bytes, "stack_bytes": self.stack_bytes,
            "stack_bound_bytes": self.stack_bound.bytes, "host_identical": self.host_identical,
        }

    def to_json(self) -> dict[str, Any]:
        """All figures as plain JSON types."""
        fp = self.footprint
        return {
            "project": self.project, "name": self.name, "target": self.target, "machine": self.board.machine,
            "c_opt": self.opt, "counting": self.counting, "counting_note": self.counting_note,
            "samples": self.samples, "host_identical": self.host_identical,
            "instructions": self.instructions, "instructions_per_mac": _round(self.per_mac),
            "run_instructions": self.run_instructions, "layer_instructions": self.layer_instructions,
            "program_instructions": self.program_instructions, "macs": self.macs,
            "executed_macs": self.executed_macs,
            "segments": [{"label": s.label, "layer": s.layer, "instructions": s.instructions}
                         for s in self.segments],
            "layers": [{"index": r.index, "name": r.name, "op": r.op, "macs": r.macs,
                        "instructions": r.instructions, "instructions_per_mac": _round(r.per_mac)}
                       for r in self.layers],
            "flash_bytes": fp.flash_bytes, "text_bytes": fp.text_bytes, "rodata_bytes": fp.rodata_bytes,
            "data_bytes": fp.data_bytes, "bss_bytes": fp.bss_bytes, "static_ram_bytes": fp.static_ram_bytes,
            "harness_flash_bytes": fp.harness_flash_bytes, "harness_ram_bytes": fp.harness_ram_bytes,
            "arena_bytes": self.arena_bytes, "stack_bytes": self.stack_bytes,
            "stack_program_bytes": self.stack_program_bytes, "stack_region_bytes": self.stack_region_bytes,
            "stack_bound_bytes": self.stack_bound.bytes, "stack_bound_path": self.stack_bound.path,
            "stack_bound_excludes": self.stack_bound.unknown, "flash_budget": self.flash_budget,
            "sram_budget": self.sram_budget, "qemu_seconds": round(self.seconds, 3), "elf": str(self.elf),
            "notes": self.notes,
        }


def model_macs(report: dict[str, Any]) -> int:
    """The model's MACs from report.json: per-layer inference's count when patch-based inference repeats some."""
    stage = report.get("patch_stage") or {}
    return int(stage.get("per_layer_macs") or report.get("macs", 0))


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def emulate(project: Path, report: dict[str, Any], target: str, opt: str, batches: list[np.ndarray], *,
            counting: str = "auto", compare_host: bool = True, timeout: float = 600.0) -> EmulationResult:
    """Build ``project`` for ``target``'s board at C level ``opt``, run ``batches`` (C layout) in QEMU, measure."""
    board = get_board(target)
    flag = c_opt_flag(opt)
    if counting not in COUNTING_METHODS:
        raise MccError(f"unknown counting method '{counting}': use {', '.join(COUNTING_METHODS)}")
    check_qemu()
    count = batches[0].shape[0] if batches else 1
    per_sample = [np.ascontiguousarray(a).reshape(count, -1).view(np.uint8) for a in batches]
    data = np.concatenate(per_sample, axis=1).tobytes() if per_sample else b""
    notes: list[str] = []
    method = "systick" if counting == "systick" else "plugin"
    plugin = None
    if method == "plugin":
        built = build_plugin()
        if built.path is None:
            if counting == "plugin":
                raise EmulationError(f"cannot count with the plugin: {built.reason}")
            notes.append(f"{built.reason}; counted with SysTick instead (±40 instructions per segment)")
            method = "systick"
        plugin = built.path
    fw = build_firmware(project, report, target, flag, systick=method == "systick")
    try:
        raw = run_image(board, fw.elf, data, plugin=plugin if method == "plugin" else None, timeout=timeout)
    except PluginLoadError as e:
        if counting == "plugin":
            raise
        notes.append(f"{e}; counted with SysTick instead (±40 instructions per segment)")
        method = "systick"
        fw = build_firmware(project, report, target, flag, systick=True)
        raw = run_image(board, fw.elf, data, timeout=timeout)
    outputs = _split_outputs(raw.output, count, report)
    per_inference = [_segments(m, None if raw.counts is None else raw.counts[i], report)
                     for i, m in enumerate(raw.marks)]
    segments = per_inference[0]
    layer_rows = _layer_rows(report, segments)
    result = EmulationResult(
        project=str(project), name=report["name"], target=target, board=board, opt=flag, counting=method,
        counting_note=_counting_note(method),
        samples=count, outputs=outputs,
        run_instructions=[_span(raw, i, 0, -1, segs) for i, segs in enumerate(per_inference)],
        layer_instructions=[_span(raw, i, 1, -2, segs) for i, segs in enumerate(per_inference)],
        segments=segments, layers=layer_rows, program_instructions=raw.program_instructions,
        macs=model_macs(report), executed_macs=int(report.get("macs", 0)),
        arena_bytes=int(report.get("arena_bytes", 0)),
        footprint=elf_footprint(fw.elf), stack_bytes=raw.stats["stack_inference_bytes"],
        stack_program_bytes=raw.stats["stack_program_bytes"], stack_region_bytes=raw.stats["stack_region_bytes"],
        stack_bound=_stack_bound(fw), flash_budget=fw.flash_budget, sram_budget=fw.sram_budget,
        seconds=raw.seconds, elf=fw.elf, notes=notes)
    if compare_host:
        specs = [(tuple(o["shape"]), np.dtype(_np_dtype(o["dtype"]))) for o in report["outputs"]]
        host = run_host(project, report["name"], batches, output_specs=specs)
        result.host_identical = all(np.array_equal(h, e) for h, e in zip(host, outputs, strict=True))
    return result


def _counting_note(method: str) -> str:
    if method == "plugin":
        return f"exact (QEMU TCG plugin); {HOOK_NOTE}"
    return (f"SysTick at -icount shift=0: ±{SYSTICK_INSTRUCTIONS_PER_TICK} instructions per segment; each segment "
            "includes one layer-hook call")


def _np_dtype(dtype: str) -> np.dtype:
    from compiler.ir import DType

    return DType(dtype).np


def _split_outputs(raw: bytes, count: int, report: dict[str, Any]) -> list[np.ndarray]:
    specs = [(tuple(o["shape"]), _np_dtype(o["dtype"])) for o in report["outputs"]]
    expected = count * sum(int(np.prod(s)) * np.dtype(d).itemsize for s, d in specs)
    if len(raw) != expected:
        raise EmulationError(f"the emulated program wrote {len(raw)} output bytes, expected {expected}")
    flat = np.frombuffer(raw, dtype=np.uint8).reshape(count, -1)
    outs, col = [], 0
    for shape, dtype in specs:
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        outs.append(flat[:, col:col + n].copy().view(dtype).reshape(count, *shape))
        col += n
    return outs


def _segments(marks: list[Mark], counts: list[int] | None, report: dict[str, Any]) -> list[Segment]:
    """Instructions between consecutive marks of one inference, labelled by the mark that ends them."""
    if counts is not None:
        deltas = [b - a for a, b in pairwise(counts)]
    else:  # SysTick counts down, 24 bits wide
        deltas = [((a.systick - b.systick) & 0xFFFFFF) * SYSTICK_INSTRUCTIONS_PER_TICK
                  for a, b in pairwise(marks)]
    layers = report.get("layers", [])
    if marks[0].id != MARK_RUN_BEGIN or len(marks) < 3 or marks[1].id != 0:
        raise EmulationError("unexpected mark sequence: the model was not compiled with MCC_LAYER_HOOK marks "
                             "(recompile it with this version of mcc)")
    segments = []
    for mark, delta in zip(marks[1:], deltas, strict=True):
        if mark.id == 0:
            segments.append(Segment("input copy", None, delta))
        elif mark.id == MARK_RUN_END:
            segments.append(Segment("output copy", None, delta))
        elif 1 <= mark.id <= len(layers):
            segments.append(Segment(layers[mark.id - 1]["name"], mark.id, delta))
        else:
            raise EmulationError(f"mark {mark.id} does not name a layer of report.json ({len(layers)} layers)")
    return segments


def _span(raw: RawRun, inference: int, first: int, last: int, segments: list[Segment]) -> int:
    """Instructions from mark ``first`` to mark ``last`` of one inference.

    With the plugin this is the difference of the two marks' counts, taken independently of the per-segment
    figures (so a test can check that the segments add up to it). SysTick values wrap every 2**24 ticks, so there
    it is the sum of the segments (each far shorter than a wrap) between the two marks.
    """
    if raw.counts is not None:
        counts = raw.counts[inference]
        return counts[last] - counts[first]
    n = len(segments) + 1
    return sum(s.instructions for s in segments[first:n + last])


def _layer_rows(report: dict[str, Any], segments: list[Segment]) -> list[LayerRow]:
    measured = {s.layer: s.instructions for s in segments if s.layer is not None}
    return [LayerRow(i, str(row["name"]), str(row["op"]), int(row.get("macs", 0)), measured.get(i))
            for i, row in enumerate(report.get("layers", []), 1)]


def _stack_bound(fw: Firmware) -> StackBound:
    ci = sorted((fw.build_dir / "obj").glob("*.ci"))
    return stack_bound(ci, "mcc_emu_invoke")


def record_in_report(project: Path, result: EmulationResult) -> None:
    """Store the result's summary in ``report.json`` under ``emulation["<target>-O<level>"]`` (atomically)."""
    path = project / "report.json"
    report = json.loads(path.read_text())
    report.setdefault("emulation", {})[f"{result.target}{result.opt}"] = result.summary()
    fd, tmp = tempfile.mkstemp(prefix=".report.", suffix=".json", dir=project)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, path)
