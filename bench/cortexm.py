"""Benchmark: the real models on emulated Cortex-M7 and Cortex-M4 — instructions, instructions per MAC, flash, SRAM.

Each model that mcc compiles is compiled once per target at mcc ``-O3`` and cross-compiled with arm-none-eabi-gcc
at ``-O0``, ``-Os`` and ``-O3``; one seeded random int8 input runs in QEMU (mps2-an500 for the M7, mps2-an386 for
the M4) with the instruction-counting plugin, and its outputs are checked against the host build. The figures are
those of ``mcc bench`` (docs/cortexm.md); ``-O0/-Os/-O3`` are the C compiler's levels, not mcc's.

Prints a Markdown table; ``--update-readme`` also writes it into README.md between the bench:cortexm markers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backends.cortexm.emulate import EmulationResult, emulate, record_in_report  # noqa: E402
from bench.readme import provenance, update_readme  # noqa: E402
from compiler.driver import compile_model  # noqa: E402
from compiler.emulate_cmd import random_c_batches  # noqa: E402
from compiler.errors import MccError  # noqa: E402
from compiler.pipelines import PatchOptions  # noqa: E402

MODELS = ["mlperf_tiny/vww_96_int8.tflite", "mlperf_tiny/kws_ref_model_int8.tflite",
          "mlperf_tiny/ic_resnet8_int8.tflite", "mlperf_tiny/ad01_int8.tflite", "tflm/person_detect.tflite",
          "tflm/micro_speech_quantized.tflite", "tinyengine/mcunet_vww.tflite",
          "tinyengine/ptq_mnist_lenet-300-100.tflite"]
TARGETS = ["cortex-m7", "cortex-m4"]
C_OPTS = ["O0", "Os", "O3"]
HOT_SPOTS = 3


def bench_model(path: Path, workdir: Path, targets: list[str], c_opts: list[str],
                log: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows for one model (one per target and C level), and its hot-spot note (first target, last C level)."""
    rows: list[dict[str, Any]] = []
    hot = ""
    for target in targets:
        project = workdir / f"{path.stem}-{target}"
        try:
            report = compile_model(path, project, opt_level=3, target=target)
        except MccError as e:
            rows.append({"model": path.stem, "target": target, "error": str(e).splitlines()[0]})
            log(f"{target}: {e}")
            continue
        for c_opt in c_opts:
            t0 = time.perf_counter()
            res = emulate(project, report, target, c_opt, random_c_batches(report, 1, seed=0), counting="plugin")
            record_in_report(project, res)
            rows.append(_row(path.stem, res))
            log(f"{target} -{c_opt}: {res.instructions:,} instructions, {time.perf_counter() - t0:.1f} s")
            if target == targets[0] and c_opt == c_opts[-1]:
                hot = _hot_spots(path.stem, res)
        if target == targets[0] and ((report.get("patch_stage") or {}).get("patches") or 1) > 1:
            rows += _per_layer_row(path, workdir, target, c_opts[-1], log)
    return rows, [hot] if hot else []


def _per_layer_row(path: Path, workdir: Path, target: str, c_opt: str, log: Any) -> list[dict[str, Any]]:
    """Where -O3 chose patch-based inference: the same model per layer (``--patches 1``), one target and C level,
    so the table shows what the patches cost in speed and save in SRAM."""
    project = workdir / f"{path.stem}-{target}-per-layer"
    report = compile_model(path, project, opt_level=3, target=target, patch=PatchOptions(patches=1))
    res = emulate(project, report, target, c_opt, random_c_batches(report, 1, seed=0), counting="plugin")
    log(f"{target} -{c_opt} --patches 1: {res.instructions:,} instructions")
    return [_row(f"{path.stem} (`--patches 1`)", res)]


def _row(model: str, res: EmulationResult) -> dict[str, Any]:
    return {"model": model, "target": res.target, "c_opt": res.opt, "macs": res.macs,
            "instructions": res.instructions, "per_mac": res.per_mac, "flash": res.footprint.flash_bytes,
            "arena": res.arena_bytes, "static_ram": res.footprint.static_ram_bytes, "stack": res.stack_bytes,
            "identical": res.host_identical}


def _hot_spots(model: str, res: EmulationResult) -> str:
    top = sorted((r for r in res.layers if r.instructions), key=lambda r: -(r.instructions or 0))[:HOT_SPOTS]
    share = sum(r.instructions or 0 for r in top) / res.instructions
    parts = [f"#{r.index} {r.op} {r.instructions:,}" + (f" ({r.per_mac:.2f}/MAC)" if r.per_mac else "")
             for r in top]
    return f"- {model}, {res.target} {res.opt}: top layers {'; '.join(parts)} — {share:.0%} of the inference"


def table(rows: list[dict[str, Any]], notes: list[str]) -> str:
    """The Markdown table with its provenance line and the hot-spot notes."""
    lines = [f"{provenance('python bench/cortexm.py --update-readme')}; QEMU 7.2 (`mps2-an500` for Cortex-M7, "
             "`mps2-an386` for Cortex-M4), arm-none-eabi-gcc "
             "at the C level shown, mcc -O3; one seeded random input; instructions of one inference counted "
             "exactly by the TCG plugin; MACs are the model's (instr/MAC divides by them; where -O3 chose patches, "
             "their recompute is not counted, and a `--patches 1` row gives the same model per layer); "
             "flash = code + constants + .data of the whole image (harness ≈ 1 KB "
             "included), static RAM = .data + .bss (arena, I/O buffers, harness ≈ 5 KB), stack = measured by "
             "painting. See [docs/cortexm.md](docs/cortexm.md).", "",
             "| model | target | C opt | MACs | instructions | instr/MAC | flash (B) | arena (B) | static RAM (B) | "
             "stack (B) | output = host |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['target']} | - | - | - | - | - | - | - | - | "
                         f"error: {r['error'][:80]} |")
            continue
        lines.append(f"| {r['model']} | {r['target']} | {r['c_opt']} | {r['macs']:,} | {r['instructions']:,} | "
                     f"{r['per_mac']:.2f} | {r['flash']:,} | {r['arena']:,} | {r['static_ram']:,} | {r['stack']:,} | "
                     f"{'yes' if r['identical'] else 'NO'} |")
    if notes:
        lines += ["", "Hot spots (the layers with the most instructions):", *notes]
    return "\n".join(lines) + "\n"


def main() -> int:
    """Run every model on every target and C level; print (optionally store) the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", type=Path, default=ROOT.parent / "shared" / "models")
    ap.add_argument("--models", help="comma-separated subset of the model paths under --models-dir")
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--opts", default=",".join(C_OPTS), help="C levels, e.g. O0,Os,O3")
    ap.add_argument("--update-readme", action="store_true")
    args = ap.parse_args()
    if not args.models_dir.is_dir():
        print(f"bench: {args.models_dir} not found", file=sys.stderr)
        return 2
    models = args.models.split(",") if args.models else MODELS
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mcc-bench-cortexm-") as tmp:
        for m in models:
            def log(msg: str, m: str = m) -> None:
                print(f"  {m}: {msg}", file=sys.stderr)

            model_rows, model_notes = bench_model(args.models_dir / m, Path(tmp), args.targets.split(","),
                                                  args.opts.split(","), log)
            rows += model_rows
            notes += model_notes
    text = table(rows, notes)
    print(text)
    if args.update_readme:
        update_readme("cortexm", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
