"""Benchmark: patch-based inference (issue 7) — peak SRAM per layer, patched with the input kept, and patched with
the input streamed, beside issue 7's targets and the published figures.

For ``tinyengine/mcunet_vww.tflite``, ``mlperf_tiny/vww_96_int8.tflite`` (from the shared models folder; skipped
with a note when absent) and a MobileNetV2 width 1.0 at 224x224 (float ONNX with seeded random weights, built by
``bench/mobilenetv2.py`` into ``build/bench/`` and quantized by mcc on a few seeded random images), prints one
Markdown row per model and mode, all from ``mcc analyze -O3`` (:func:`compiler.analyze_cmd.analyze`):

- per layer: ``--patches 1`` (no patch stage);
- patched, input kept: ``-O3``'s automatic choice (split and patch count with the smallest arena within the MAC
  limit, ``--patch-max-overhead`` default 15%; per-layer when nothing is smaller);
- patched, input streamed: the same with ``--stream-input`` (the graph input never enters the arena).

Each row gives the peak SRAM (arena plus kernel scratch), the reduction from per-layer, the split (kernel ops in
the tiled stage, and the stage output's shape), the patches per side, MACs and MAC overhead (as ``patch-stage``
records them), issue 7's target and whether it is met (peak SRAM within the limit and MAC overhead within 15%), the
published reference figure, and the wall time of the analysis. ``--update-readme`` also writes the table into
README.md between the ``bench:patches`` markers.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.mobilenetv2 import CACHE, CALIBRATION_IMAGES, ensure  # noqa: E402
from bench.readme import provenance, update_readme  # noqa: E402
from compiler.analyze_cmd import Analysis, analyze  # noqa: E402
from compiler.pipelines import PatchOptions  # noqa: E402

SHARED_MODELS = ["tinyengine/mcunet_vww.tflite", "mlperf_tiny/vww_96_int8.tflite"]
MOBILENETV2 = "mobilenetv2_224"
"""Row label of the MobileNetV2 built by ``bench/mobilenetv2.py``."""
MODES: dict[str, PatchOptions] = {"per layer": PatchOptions(patches=1), "patched, input kept": PatchOptions(),
                                  "patched, input streamed": PatchOptions(stream_input=True)}
"""The three ways each model is measured, by row label."""
MAX_OVERHEAD = 0.15
"""Issue 7's MAC overhead limit (also ``--patch-max-overhead``'s default)."""
TARGETS: dict[tuple[str, str], int] = {
    ("mcunet_vww", "patched, input kept"): 36_000, ("mcunet_vww", "patched, input streamed"): 30_000,
    ("vww_96_int8", "patched, input kept"): 42_000, ("vww_96_int8", "patched, input streamed"): 22_000,
    (MOBILENETV2, "patched, input streamed"): 180_000}
"""Issue 7's acceptance limits on peak SRAM (bytes), by model and mode."""
REFERENCES: dict[tuple[str, str], str] = {
    ("mcunet_vww", "per layer"): "TinyEngine 62,352 (2x2 patches, split at op 5)",
    ("mcunet_vww", "patched, input kept"): "≈ 30,100 at +6% (issue 7, analytic)",
    ("vww_96_int8", "per layer"): "TFLM 103,680",
    ("vww_96_int8", "patched, input kept"): "≈ 39,800 at +5% (issue 7, analytic)",
    (MOBILENETV2, "per layer"): "MCUNetV2 1,372 kB",
    (MOBILENETV2, "patched, input kept"): "≈ 313 kB (issue 7, MCUNetV2's split)",
    (MOBILENETV2, "patched, input streamed"): "MCUNetV2 172 kB at +10% MACs"}
"""Published (or the issue's analytic) figures to compare with, by model and mode."""
OPT_LEVEL = 3
COMMAND = "python bench/patches.py --update-readme"


@dataclass(frozen=True)
class PatchRow:
    """One model in one mode."""

    model: str
    mode: str
    sram: int
    """Peak SRAM: the arena, kernel scratch included (``Analysis.sram_bytes``)."""
    per_layer: int
    """Peak SRAM of the same model per layer."""
    split: int
    """Kernel ops in the tiled stage (0: per-layer inference)."""
    patches: int
    stage_shape: tuple[int, ...]
    """Shape of the tiled stage's output (empty without a stage)."""
    peak_op: str
    peak_shape: tuple[int, ...]
    peak_in_stage: bool
    """Whether the peak layer runs inside the tiled stage (else in the per-layer rest of the network)."""
    macs: int
    overhead: float
    """Extra MACs over per-layer inference, a fraction."""
    seconds: float
    """Wall time of the analysis (import, quantization where needed, passes, plan)."""

    @property
    def target(self) -> int | None:
        """Issue 7's limit for this model and mode, if it states one."""
        return TARGETS.get((self.model, self.mode))

    @property
    def met(self) -> bool | None:
        """Within the target's bytes and the 15% MAC limit; None without a target."""
        if self.target is None:
            return None
        return self.sram <= self.target and self.overhead <= MAX_OVERHEAD + 1e-9


def _row(model: str, mode: str, a: Analysis, per_layer: int, seconds: float) -> PatchRow:
    ps = a.patch_stage
    patches = 1 if ps is None else int(ps["patches"])
    inserts = [k for k, r in enumerate(a.rows) if r.op == "nn.insert"]
    stage_end = inserts[-1] if patches > 1 and inserts else -1
    peak = a.peak
    return PatchRow(model=model, mode=mode, sram=a.sram_bytes, per_layer=per_layer,
                    split=0 if patches == 1 or ps is None else int(ps["split"]), patches=patches,
                    stage_shape=a.rows[stage_end].shape if stage_end >= 0 else (),
                    peak_op="-" if peak is None else peak.op, peak_shape=() if peak is None else peak.shape,
                    peak_in_stage=peak is not None and a.rows.index(peak) <= stage_end, macs=a.macs,
                    overhead=0.0 if patches == 1 or ps is None else float(ps["mac_overhead"]), seconds=seconds)


def measure(path: Path, model: str, calibration: Path | None = None) -> list[PatchRow]:
    """The rows of ``path`` in every mode of :data:`MODES` at ``-O3``; raises if mcc cannot compile the model."""
    rows: list[PatchRow] = []
    per_layer = 0
    for mode, opts in MODES.items():
        t0 = time.perf_counter()
        a = analyze(path, opt_level=OPT_LEVEL, calibration=None if calibration is None else str(calibration),
                    patch=opts)
        seconds = time.perf_counter() - t0
        if opts.patches == 1:
            per_layer = a.sram_bytes
        rows.append(_row(model, mode, a, per_layer, seconds))
        print(f"  {model}, {mode}: {a.sram_bytes:,} B in {seconds:.1f} s", file=sys.stderr)
    return rows


def _split_cell(r: PatchRow) -> str:
    if r.patches == 1:
        return "-" if r.mode == "per layer" else "none: per layer is smallest"
    return f"{r.split} → {'x'.join(map(str, r.stage_shape))}" if r.stage_shape else str(r.split)


def table(rows: list[PatchRow], skipped: list[str], seconds: float | None = None) -> str:
    """The Markdown table with its provenance line and notes."""
    took = "" if seconds is None else f" in {seconds:.0f} s"
    lines = [f"{provenance(COMMAND)}{took}. Sizes in bytes; mcc at `-O{OPT_LEVEL}` "
             f"for `cortex-m7` (`mcc analyze`), automatic choice within {MAX_OVERHEAD:.0%} extra MACs.", ""]
    if not rows:
        lines.append("No model was measured.")
    else:
        lines += ["| model | inference | peak SRAM | per layer / this | split (ops → stage output) | patches | "
                  "peak layer | MACs | MAC overhead | issue 7 target | met | reference | time (s) |",
                  "|---|---|---:|---:|---|---:|---|---:|---:|---:|---|---|---:|"]
        for r in rows:
            ratio = "-" if r.mode == "per layer" or not r.sram else f"{r.per_layer / r.sram:.2f}x"
            where = "" if r.patches == 1 else (", in the stage" if r.peak_in_stage else ", after the stage")
            peak = f"`{r.peak_op}` {'x'.join(map(str, r.peak_shape))}{where}"
            patches = "-" if r.patches == 1 else f"{r.patches}x{r.patches}"
            overhead = "-" if r.patches == 1 else f"+{100 * r.overhead:.1f}%"
            target = "-" if r.target is None else f"≤ {r.target:,}"
            met = "-" if r.met is None else ("yes" if r.met else "**no**")
            ref = REFERENCES.get((r.model, r.mode), "-")
            lines.append(f"| {r.model} | {r.mode} | {r.sram:,} | {ratio} | {_split_cell(r)} | {patches} | {peak} | "
                         f"{r.macs:,} | {overhead} | {target} | {met} | {ref} | {r.seconds:.1f} |")
    lines += ["",
              "- peak SRAM: the static arena with kernel scratch, graph input counted unless streamed; per layer: "
              "`--patches 1`; patched: `-O3`'s automatic split and patch count (the smallest planned arena whose "
              f"MACs stay within {MAX_OVERHEAD:.0%} of per-layer; per-layer when nothing is smaller), with "
              "`--stream-input` for the streamed rows.",
              "- split: kernel ops in the tiled stage and the shape of its output; peak layer: the op where the live "
              "bytes peak (a tile's op inside the stage, or a layer of the per-layer rest); met: peak SRAM within "
              f"the target and MAC overhead within {MAX_OVERHEAD:.0%}; time: one `analyze` call (quantization "
              "included).",
              f"- {MOBILENETV2}: `bench/mobilenetv2.py`, MobileNetV2 width 1.0 at 224x224x3, float ONNX with seeded "
              f"random He-scaled weights (no BatchNorm), quantized by mcc on {CALIBRATION_IMAGES} seeded random "
              "images; MCUNetV2's figures are for the trained network (kB as published)."]
    lines += [f"- skipped: {s}" for s in skipped]
    return "\n".join(lines) + "\n"


def main() -> int:
    """Measure every model and print (optionally store) the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", type=Path, default=ROOT.parent / "shared" / "models")
    ap.add_argument("--cache", type=Path, default=CACHE, help="where the MobileNetV2 goes (default: %(default)s)")
    ap.add_argument("--no-mobilenetv2", action="store_true", help="skip the MobileNetV2-224")
    ap.add_argument("--update-readme", action="store_true")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md", help="README to update (default: %(default)s)")
    args = ap.parse_args()
    rows: list[PatchRow] = []
    skipped: list[str] = []
    t0 = time.perf_counter()
    for m in SHARED_MODELS:
        path = args.models_dir / m
        if not path.is_file():
            print(f"bench: {path} not found (a public clone has no shared models)", file=sys.stderr)
            skipped.append(f"{m}: not found in {args.models_dir.name}/")
            continue
        rows += measure(path, path.stem)
    if not args.no_mobilenetv2:
        built = ensure(args.cache)
        rows += measure(built.onnx, MOBILENETV2, built.calibration)
    text = table(rows, skipped, time.perf_counter() - t0)
    print(text)
    if args.update_readme:
        update_readme("patches", text, args.readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
