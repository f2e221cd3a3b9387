"""Benchmark: peak SRAM of the real int8 models — mcc at -O3 beside its lower bound, its plan without overlapping
buffers and TFLite Micro's arena.

For each ``.tflite`` model that mcc compiles, prints one Markdown row: mcc's peak SRAM at ``-O3`` (arena plus kernel
scratch, as ``mcc analyze -O3`` reports it), the analytic per-layer lower bound of the arena and the gap to it, the
layer that sets the peak, the arena mcc plans for the same graph and op order when no result may overlap a dying
operand, TFLM's smallest working arena (total and head, probed in child processes by
:func:`compiler.compare.run_tflm`), the ratio TFLM total / mcc, and issue 5's target where it states one.

``--update-readme`` also writes the table into README.md between the ``bench:memory`` markers. Without the shared
models folder (a public clone) it says so and exits 0.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compiler.analyze_cmd import analyze  # noqa: E402
from compiler.compare import PeerResult, run_tflm  # noqa: E402
from compiler.driver import prepare_model  # noqa: E402
from compiler.memory import plan_memory  # noqa: E402
from compiler.pipelines import PatchOptions  # noqa: E402

MODELS = ["mlperf_tiny/vww_96_int8.tflite", "mlperf_tiny/kws_ref_model_int8.tflite",
          "mlperf_tiny/ic_resnet8_int8.tflite", "mlperf_tiny/ad01_int8.tflite", "tflm/person_detect.tflite",
          "tflm/micro_speech_quantized.tflite", "tflm/hello_world_int8.tflite", "tinyengine/mcunet_vww.tflite"]
TARGETS = {"vww_96_int8": 50_000, "kws_ref_model_int8": 12_000, "ic_resnet8_int8": 36_000,
           "person_detect": 45_000, "mcunet_vww": 82_000}
"""Issue 5's acceptance limits on peak SRAM at ``-O3`` (bytes), by model file stem."""
OPT_LEVEL = 3
START, END = "<!-- bench:memory:start -->", "<!-- bench:memory:end -->"
COMMAND = "python bench/memory.py --update-readme"


@dataclass(frozen=True)
class MemoryRow:
    """The memory figures of one model (bytes)."""

    model: str
    sram: int
    """mcc's peak SRAM at ``-O3``: arena plus kernel scratch (``Analysis.sram_bytes``)."""
    arena: int
    lower_bound: int
    """The most arena bytes live at one op, less what legal overlaps there can share: no placement does better."""
    gap: int
    """Arena above the lower bound."""
    peak_row: int
    """Row number of the peak layer in ``mcc analyze``'s table."""
    peak_op: str
    peak_shape: tuple[int, ...]
    no_overlap: int
    """Peak SRAM of the same graph and op order planned without result-over-operand overlaps."""
    tflm: PeerResult | None
    """TFLM's probe (``None`` when not asked for)."""
    patched: int = 0
    """Peak SRAM at plain ``-O3``, where patch-based inference may tile the first layers (issue 7)."""

    @property
    def target(self) -> int | None:
        """Issue 5's limit for this model, if it states one."""
        return TARGETS.get(self.model)

    @property
    def ratio(self) -> float | None:
        """TFLM's arena total over mcc's peak SRAM."""
        if self.tflm is None or not self.tflm.ok or self.tflm.sram_bytes is None or not self.sram:
            return None
        return self.tflm.sram_bytes / self.sram


def measure(path: Path, workdir: Path, *, tflm: bool = True) -> MemoryRow:
    """mcc's figures for ``path`` at ``-O3`` and (with ``tflm``) TFLM's smallest arena; raises if mcc cannot
    compile the model."""
    per_layer = PatchOptions(patches=1)
    a = analyze(path, opt_level=OPT_LEVEL, patch=per_layer)
    peak = a.peak
    outside = a.sram_bytes - a.plan.arena_bytes  # scratch the analysis counts outside the arena
    graph = prepare_model(path, opt_level=OPT_LEVEL, patch=per_layer).graph
    no_overlap = plan_memory(graph, overlap=False).arena_bytes + outside
    return MemoryRow(
        model=path.stem, sram=a.sram_bytes, arena=a.plan.arena_bytes, lower_bound=a.plan.lower_bound,
        gap=a.plan.gap_bytes, peak_row=-1 if peak is None else a.rows.index(peak),
        peak_op="-" if peak is None else peak.op, peak_shape=() if peak is None else peak.shape,
        no_overlap=no_overlap, tflm=run_tflm(path, None, 1, workdir) if tflm else None,
        patched=analyze(path, opt_level=OPT_LEVEL).sram_bytes)


def _tflm_cells(r: MemoryRow) -> tuple[str, str]:
    """The TFLM arena and ratio cells."""
    t = r.tflm
    if t is None:
        return "not run", "-"
    if not t.ok or t.sram_bytes is None:
        return t.status.split(":")[0], "-"
    head = "" if t.sram_head is None else f" ({t.sram_head:,})"
    return f"{t.sram_bytes:,}{head}", "-" if r.ratio is None else f"{r.ratio:.2f}x"


def table(rows: list[MemoryRow], skipped: list[str], seconds: float | None = None) -> str:
    """The Markdown table with its provenance line and notes."""
    when = datetime.date.today().isoformat()
    machine = f"{platform.machine()}, {platform.system()} {platform.release()}, Python {platform.python_version()}"
    took = "" if seconds is None else f" in {seconds:.0f} s"
    lines = [f"Generated by `{COMMAND}` on {when} ({machine}){took}. Sizes in bytes; mcc at `-O{OPT_LEVEL}` "
             "for `cortex-m7`, per-layer inference (`--patches 1`) unless the column says otherwise, graph input "
             "counted.", ""]
    if not rows:
        lines.append("No model was measured.")
    else:
        lines += ["| model | mcc peak SRAM | lower bound | gap | peak layer (#, op, result) | mcc without overlap | "
                  "TFLM arena total (head) | TFLM / mcc | issue 5 target | met | mcc -O3 with patches |",
                  "|---|---:|---:|---:|---|---:|---:|---:|---:|---|---:|"]
        for r in rows:
            shape = "x".join(map(str, r.peak_shape))
            scratch = f" ({r.arena:,} + {r.sram - r.arena:,} scratch)" if r.sram != r.arena else ""
            tflm, ratio = _tflm_cells(r)
            target = "-" if r.target is None else f"≤ {r.target:,}"
            met = "-" if r.target is None else ("yes" if r.sram <= r.target else "no")
            lines.append(f"| {r.model} | {r.sram:,}{scratch} | {r.lower_bound:,} | {r.gap:,} | "
                         f"#{r.peak_row} `{r.peak_op}` {shape} | {r.no_overlap:,} | {tflm} | {ratio} | {target} | "
                         f"{met} | {r.patched:,} |")
    lines += ["",
              "- mcc peak SRAM: the static arena plus kernel scratch (`mcc analyze -O3`); lower bound: the most "
              "bytes live at one op less what that op's legal overlaps can share (no placement does better); gap: "
              "arena - bound; peak layer: row of `mcc analyze`'s table.",
              "- mcc without overlap: the same graph and op order planned with no result written over a dying "
              "operand (`plan_memory(graph, overlap=False)`).",
              "- mcc -O3 with patches: the default `-O3`, whose patch-stage pass tiles the first layers when that "
              "lowers the peak within 15% more MACs (input kept in SRAM; see the patch table below).",
              "- TFLM: the smallest arena the PyPI `tflite-micro` interpreter (x86 build) runs the same `.tflite` "
              "in; head = its planned activations, the rest is persistent runtime data."]
    for r in rows:
        if r.tflm is not None:
            lines += [f"- {r.model}, TFLM: {n}" for n in r.tflm.notes if not n.startswith("x86 build")]
            if not r.tflm.ok:
                lines.append(f"- {r.model}, TFLM: {r.tflm.status}")
    lines += [f"- skipped: {s}" for s in skipped]
    return "\n".join(lines) + "\n"


def update_readme(readme: Path, text: str) -> bool:
    """Replace what lies between the ``bench:memory`` markers of ``readme`` by ``text``; False without markers."""
    body = readme.read_text()
    if START not in body or END not in body:
        return False
    readme.write_text(re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _m: f"{START}\n{text}{END}",
                             body, flags=re.S))
    return True


def main() -> int:
    """Measure every model and print (optionally store) the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", type=Path, default=ROOT.parent / "shared" / "models")
    ap.add_argument("--no-tflm", action="store_true", help="skip the TFLM probe")
    ap.add_argument("--update-readme", action="store_true")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md", help="README to update (default: %(default)s)")
    args = ap.parse_args()
    rows: list[MemoryRow] = []
    skipped: list[str] = []
    t0 = time.perf_counter()
    if not args.models_dir.is_dir():
        print(f"bench: {args.models_dir} not found (a public clone has no shared models); nothing to measure",
              file=sys.stderr)
        skipped.append(f"every model: {args.models_dir.name}/ not found")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            for m in MODELS:
                path = args.models_dir / m
                if not path.is_file():
                    skipped.append(f"{m}: file not found")
                    continue
                try:
                    rows.append(measure(path, Path(tmp), tflm=not args.no_tflm))
                    print(f"  {m}: done", file=sys.stderr)
                except Exception as e:  # a model mcc cannot compile is skipped with its reason
                    first = (str(e).splitlines() or [""])[0][:200]
                    skipped.append(f"{m}: does not compile ({type(e).__name__}: {first})")
                    print(f"  {m}: skipped ({type(e).__name__})", file=sys.stderr)
    text = table(rows, skipped, time.perf_counter() - t0)
    print(text)
    if args.update_readme and not update_readme(args.readme, text):
        print(f"bench: {args.readme} has no {START} … {END} markers", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
