"""``mcc analyze MODEL``: where a model's SRAM and flash go, layer by layer, and whether it fits a target.

The model is prepared exactly as compilation does (:func:`compiler.driver.prepare_model`), planned with the same
:func:`compiler.memory.plan_memory` and lowered with the same C lowering for its flash figure, so every number here is
the one ``mcc MODEL -o DIR`` puts in ``report.json``. The per-layer rows come from
:func:`compiler.analysis.layer_table`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from compiler.analysis import LayerRow, layer_table
from compiler.errors import MccError
from compiler.memory import MemoryPlan, plan_from_ir
from compiler.passmanager import PassManager, parse_pipeline
from compiler.pipelines import PatchOptions, add_patch_arguments, patch_options
from compiler.targets import Target, get_target

HOST_LIMIT = 1 << 40
"""Budgets this large mean "no limit" (the host target): no line in the plot."""


@dataclass(frozen=True)
class Analysis:
    """Everything ``mcc analyze`` prints about one model on one target."""

    model: str
    target: Target
    opt_level: int
    pipeline: str
    rows: list[LayerRow]
    plan: MemoryPlan
    weight_bytes: int
    flash_bytes: int
    flash_note: str
    """Empty, or why ``flash_bytes`` counts the weights alone (the graph could not be lowered to C)."""
    patch_stage: dict[str, Any] | None = None
    """What ``patch-stage`` decided (split, patches, arenas and MACs with and without), when it ran."""

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one inference."""
        return sum(r.macs for r in self.rows)

    @property
    def scratch_bytes(self) -> int:
        """The largest kernel scratch buffer (planned inside the arena)."""
        return self.plan.scratch_bytes

    @property
    def sram_bytes(self) -> int:
        """SRAM one inference needs: the arena, kernel scratch included."""
        return self.plan.arena_bytes

    @property
    def fits(self) -> bool:
        """True when both SRAM and flash fit the target's budgets."""
        return self.sram_bytes <= self.target.sram_bytes and self.flash_bytes <= self.target.flash_bytes

    @property
    def peak(self) -> LayerRow | None:
        """The layer where the live bytes peak."""
        return next((r for r in self.rows if r.peak), None)


def analyze(path: Path, *, target: str = "cortex-m7", sram: int | None = None, flash: int | None = None,
            opt_level: int = 2, calibration: str | None = None, patch: PatchOptions | None = None) -> Analysis:
    """Prepare ``path`` as compilation would, plan its memory and collect the per-layer figures."""
    from backends.c.lower import lower
    from compiler.driver import check_integer, model_name, prepare_model

    tgt = get_target(target, sram=sram, flash=flash)
    prepared = prepare_model(path, opt_level=opt_level, target=tgt.name, calibration=calibration, patch=patch)
    graph = prepared.graph
    if graph.arena_bytes is None:
        PassManager(parse_pipeline("plan-memory")).run(graph)
    plan = plan_from_ir(graph)
    rows = layer_table(graph, plan)
    weights = sum(r.weight_bytes for r in rows)
    try:
        check_integer(graph)
        program = lower(graph, plan, model_name(path, None))
        flash_bytes, note = sum(a.array.nbytes for a in (*program.weights, *program.tables)), ""
    except MccError as e:
        flash_bytes, note = weights, f"weights only: {e}"
    return Analysis(path.name, tgt, opt_level, prepared.pipeline, rows, plan, weights, flash_bytes, note,
                    prepared.notes.get("patch_stage"))


def _patch_line(a: Analysis) -> list[str]:
    ps = a.patch_stage
    if ps is None:
        return []
    if ps["patches"] == 1:
        return [f"patch stage: per-layer inference kept (no split and patch count within the MAC limit gives a "
                f"smaller arena than {ps['per_layer_arena_bytes']:,} B)"]
    return [f"patch stage: the first {ps['split']} kernel ops in {ps['patches']}x{ps['patches']} tiles, MAC overhead "
            f"{100 * ps['mac_overhead']:.1f}% (per-layer arena {ps['per_layer_arena_bytes']:,} B)"]


def to_json(a: Analysis) -> dict[str, Any]:
    """The analysis as JSON-ready data (sizes in bytes). ``layers[k].index`` is the op's position in the graph
    (constants included); ``peak_layer.layer`` is ``k``, the row number the table shows."""
    peak = a.peak
    return {
        "model": a.model,
        "target": {"name": a.target.name, "board": a.target.board, "sram_bytes": a.target.sram_bytes,
                   "flash_bytes": a.target.flash_bytes},
        "opt_level": a.opt_level,
        "pipeline": a.pipeline,
        "patch_stage": a.patch_stage,
        "layers": [{**asdict(r), "shape": list(r.shape)} for r in a.rows],
        "peak_layer": None if peak is None else {"layer": a.rows.index(peak), "name": peak.name, "op": peak.op},
        "totals": {"macs": a.macs, "weight_bytes": a.weight_bytes, "flash_bytes": a.flash_bytes,
                   "arena_bytes": a.plan.arena_bytes, "scratch_bytes": a.scratch_bytes,
                   "peak_sram_bytes": a.sram_bytes, "lower_bound_bytes": a.plan.lower_bound,
                   "gap_bytes": a.plan.gap_bytes, "placement": a.plan.placement},
        "fit": {"sram_needed": a.sram_bytes, "sram_available": a.target.sram_bytes,
                "flash_needed": a.flash_bytes, "flash_available": a.target.flash_bytes, "fits": a.fits},
        "flash_note": a.flash_note,
    }


def _short(name: str, width: int) -> str:
    name = name.split(";")[0]
    return name if len(name) <= width else "…" + name[-(width - 1):]


def _kb(n: int) -> str:
    return f"{n / 1024:,.1f} KB"


def format_table(a: Analysis) -> str:
    """The per-layer table, totals, lower bound and fit as text."""
    head = ("#", "layer", "op", "output shape", "MACs", "weights", "live", "scratch", "")
    body = [(str(k), _short(r.name, 28), r.op, "x".join(map(str, r.shape)), f"{r.macs:,}", f"{r.weight_bytes:,}",
             f"{r.live_bytes:,}", f"{r.scratch_bytes:,}", "<- peak" if r.peak else "")
            for k, r in enumerate(a.rows)]
    widths = [max(len(row[c]) for row in [head, *body]) for c in range(len(head))]
    right = {0, 4, 5, 6, 7}

    def line(row: Sequence[str]) -> str:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        return "  ".join(cells).rstrip()

    t = a.target
    sram_ok = "fits" if a.sram_bytes <= t.sram_bytes else "DOES NOT FIT"
    flash_ok = "fits" if a.flash_bytes <= t.flash_bytes else "DOES NOT FIT"
    peak = a.peak
    where = f" at layer {a.rows.index(peak)} ({peak.op})" if peak is not None else ""
    out = [f"{a.model} at -O{a.opt_level} for {t.name}: {t.board}", "", line(head),
           line(["-" * w for w in widths]), *(line(r) for r in body), "",
           f"layers {len(a.rows)}, MACs {a.macs:,}, weights {a.weight_bytes:,} B",
           f"arena {a.plan.arena_bytes:,} B (peak{where}; scratch inside it, largest {a.scratch_bytes:,} B), "
           f"lower bound {a.plan.lower_bound:,} B, gap {a.plan.gap_bytes:,} B (placement: {a.plan.placement})",
           *_patch_line(a),
           f"SRAM  {a.sram_bytes:>12,} B of {t.sram_bytes:>14,} B  {sram_ok}",
           f"flash {a.flash_bytes:>12,} B of {t.flash_bytes:>14,} B  {flash_ok}"
           + (f"  ({a.flash_note})" if a.flash_note else "")]
    return "\n".join(out) + "\n"


def plot_memory(a: Analysis, out: Path) -> None:
    """A bar chart of live SRAM per layer with the target's SRAM budget as a line (MCUNet style), as an image."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MccError("--plot needs matplotlib, which is not installed (pip install matplotlib)") from None
    live = [r.live_bytes / 1024 for r in a.rows]
    colours = ["tab:red" if r.peak else "tab:blue" for r in a.rows]
    fig, ax = plt.subplots(figsize=(max(7.0, 0.25 * len(live) + 2), 4.5))
    ax.bar(range(len(live)), live, color=colours, label="live activations + scratch (peak in red)")
    top = max(live, default=0.0)
    if a.target.sram_bytes < HOST_LIMIT:
        limit = a.target.sram_bytes / 1024
        ax.axhline(limit, color="black", linestyle="--", label=f"{a.target.name} SRAM ({limit:,.0f} KB)")
        top = max(top, limit)
    ax.set_ylim(0, top * 1.15 or 1)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_xlabel("layer (execution order)")
    ax.set_ylabel("live SRAM (KB)")
    ax.set_title(f"{a.model} (-O{a.opt_level})\narena {_kb(a.plan.arena_bytes)}, lower bound "
                 f"{_kb(a.plan.lower_bound)}, flash {_kb(a.flash_bytes)}", fontsize=10)
    fig.tight_layout()
    try:
        fig.savefig(out)
    except OSError as e:
        raise MccError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mcc analyze",
                                description="Per-layer MACs, weights and live SRAM of a model, its peak, the memory "
                                            "plan's lower bound and whether it fits a target.")
    p.add_argument("model", help="model file (.onnx or .mir)")
    p.add_argument("--target", default="cortex-m7",
                   help="cortex-m7 (STM32F746, default), cortex-m4 (STM32F412), stm32h743, cortex-m0plus or host")
    p.add_argument("--sram", type=int, metavar="BYTES", help="override the target's SRAM budget")
    p.add_argument("--flash", type=int, metavar="BYTES", help="override the target's flash budget")
    p.add_argument("-O", dest="opt_level", type=int, choices=range(4), default=2, metavar="LEVEL",
                   help="optimisation level 0-3 (default 2)")
    p.add_argument("--calibration", metavar="FILE", help="representative inputs for quantizing a float model")
    add_patch_arguments(p)
    p.add_argument("--plot", metavar="PNG", help="write a bar chart of live SRAM per layer (needs matplotlib)")
    p.add_argument("--json", action="store_true", help="print the analysis as JSON instead of a table")
    return p


def cmd_analyze(argv: list[str]) -> int:
    """``mcc analyze``: print the table (or JSON) and optionally write the plot; 0 whether or not the model fits."""
    args = _parser().parse_args(argv)
    a = analyze(Path(args.model), target=args.target, sram=args.sram, flash=args.flash, opt_level=args.opt_level,
                calibration=args.calibration, patch=patch_options(args))
    if args.plot:
        plot_memory(a, Path(args.plot))
    if args.json:
        print(json.dumps(to_json(a), indent=2))
    else:
        print(format_table(a), end="")
        if args.plot:
            print(f"wrote {args.plot}")
    return 0
