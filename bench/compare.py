"""Benchmark: ``mcc compare`` over the real int8 models — mcc beside TFLite Micro, TVM and onnxruntime.

For each model (the ``.tflite`` files of MLPerf Tiny VWW, KWS and IC, and TFLM's person_detect) runs mcc and every
installed peer on the same seeded random int8 inputs: peak SRAM, flash, host latency of one inference and agreement
with mcc's outputs. TVM reads the ``.tflite`` with its Relax TFLite frontend (the ``derived_onnx/`` QDQ form if that
fails); onnxruntime runs the QDQ form (person_detect has none).

Prints a Markdown table; ``--update-readme`` also writes it into README.md between the bench markers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.readme import provenance, update_readme  # noqa: E402
from compiler.compare import PEER_TITLES, PEERS, STATUS_WIDTH, CompareResult, compare, table_rows  # noqa: E402

MODELS = ["mlperf_tiny/vww_96_int8.tflite", "mlperf_tiny/kws_ref_model_int8.tflite",
          "mlperf_tiny/ic_resnet8_int8.tflite", "tflm/person_detect.tflite"]


def table(results: list[CompareResult], n: int) -> str:
    """The Markdown table (one row per model and runtime) with its provenance line and notes."""
    lines = [f"{provenance('python bench/compare.py --update-readme')}; {n} seeded random "
             "int8 inputs per model; latency is one inference on one host core; diffs are against mcc's outputs, "
             "in output quantization steps. See [docs/compare.md](docs/compare.md) for what each figure counts.", "",
             "| model | runtime | status | peak SRAM (B) | flash (B) | latency (ms) | max \\|diff\\| (steps) | "
             "identical outputs | top-1 agreement |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    notes: dict[str, str] = {}
    ran: dict[str, set[str]] = {}
    failures = []
    for res in results:
        name = Path(res.model).stem
        for r, row in zip(res.results, table_rows(res), strict=True):
            lines.append(f"| {name} | " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
            if r.ok:
                notes.setdefault(r.peer, f"SRAM = {r.sram_note}; flash = {r.flash_note}")
                ran.setdefault(r.peer, set()).add("ONNX form" if r.model and r.model.endswith(".onnx") else ".tflite")
            elif len(r.status) > STATUS_WIDTH:
                failures.append(f"- {name}, {PEER_TITLES[r.peer]}: {r.status}")
    lines.append("")
    lines += [f"- {PEER_TITLES[p]} (ran the {' / '.join(sorted(ran[p]))}): {text}" for p, text in notes.items()]
    lines += failures
    return "\n".join(lines) + "\n"


def main() -> int:
    """Run the comparison on every model and print (optionally store) the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", type=Path, default=ROOT.parent / "shared" / "models")
    ap.add_argument("-n", type=int, default=100)
    ap.add_argument("--against", default=",".join(PEERS))
    ap.add_argument("--update-readme", action="store_true")
    args = ap.parse_args()
    if not args.models_dir.is_dir():
        print(f"bench: {args.models_dir} not found", file=sys.stderr)
        return 2
    results = []
    for m in MODELS:
        def log(msg: str, m: str = m) -> None:
            print(f"  {m}: {msg}", file=sys.stderr)

        results.append(compare(args.models_dir / m, against=args.against.split(","), n=args.n, log=log))
    text = table(results, args.n)
    print(text)
    if args.update_readme:
        update_readme("compare", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
