"""Benchmark: the real int8 QDQ ONNX models compiled at -O3 — memory, flash, MACs, and agreement with onnxruntime.

For each model: compile with mcc, run the generated C (host build) on N seeded random int8 inputs, run the same
inputs through onnxruntime (``ORT_ENABLE_BASIC``), and compare: top-1 agreement and the difference in output
quantization steps. The two are not expected to be bit-identical: onnxruntime emulates QDQ in float (dequantize,
float op, quantize with round-half-to-even), while mcc computes TFLite integer arithmetic (int32 accumulators,
fixed-point requantization with round-half-away-from-zero).

Prints a Markdown table; ``--update-readme`` also writes it into README.md between the bench markers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.readme import provenance, update_readme  # noqa: E402
from compiler.driver import compile_graph, model_name, prepare_model  # noqa: E402
from compiler.interpreter import run_all  # noqa: E402
from compiler.runner import run_project  # noqa: E402
from compiler.targets import get_target  # noqa: E402

MODELS = ["mlperf_tiny_vww_96_int8.qdq.onnx", "mlperf_tiny_kws_ref_model_int8.qdq.onnx",
          "mlperf_tiny_ic_resnet8_int8.qdq.onnx", "mlperf_tiny_ad01_int8.qdq.onnx"]


def bench_model(path: Path, n: int, workdir: Path) -> dict:
    """Compile, run C and onnxruntime on ``n`` inputs, and compare."""

    t0 = time.perf_counter()
    prepared = prepare_model(path, opt_level=3)
    name = model_name(path, None)
    out = workdir / name
    report = compile_graph(prepared.graph, out, name=name, target=get_target("cortex-m7"), ins=prepared.inputs,
                           outs=prepared.outputs, source=path.name, opt_level=3, pipeline=prepared.pipeline)
    compile_s = time.perf_counter() - t0
    spec_in, spec_out = report["inputs"][0], report["outputs"][0]
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (n, *spec_in["model_shape"])).astype(np.int8)
    c_out = run_project(out, {spec_in["name"]: x})[spec_out["name"]].reshape(n, -1).astype(np.int32)
    sess, logits_name = _ort_session_with_logits(path)
    in_name = sess.get_inputs()[0].name
    runs = [sess.run(None, {in_name: x[i]}) for i in range(n)]
    o_out = np.concatenate([r[0] for r in runs]).reshape(n, -1).astype(np.int32)
    diff = np.abs(c_out - o_out)
    logits_diff = None
    softmax = [op for op in prepared.graph.ops if op.kind == "nn.softmax"]
    if logits_name is not None and softmax:
        ours = np.stack([run_all(prepared.graph, [x[i]])[str(softmax[0].operands[0].name)] for i in range(n)])
        theirs = np.stack([r[1] for r in runs])
        logits_diff = int(np.abs(ours.astype(np.int32).reshape(n, -1) - theirs.astype(np.int32).reshape(n, -1)).max())
    if c_out.shape[1] > 1 and "ad01" not in path.name:
        agree = float(np.mean(c_out.argmax(1) == o_out.argmax(1)))
    else:
        agree = float("nan")
    return {
        "model": path.name.replace(".qdq.onnx", ""), "ops": sum(op.kind != "const" for op in prepared.graph.ops),
        "macs": report["macs"], "sram": report["peak_sram_bytes"], "flash": report["flash_bytes"],
        "agree": agree, "max_diff": int(diff.max()), "mean_diff": float(diff.mean()),
        "exact": float(np.mean(diff == 0)), "compile_s": compile_s, "logits_diff": logits_diff,
    }


def _ort_session_with_logits(path: Path) -> tuple[object, str | None]:
    """An onnxruntime session that also returns the int8 tensor feeding the softmax (if there is one)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(path)
    producers = {o: node for node in model.graph.node for o in node.output}
    softmax = [node for node in model.graph.node if node.op_type == "Softmax"]
    logits = None
    if softmax and softmax[0].input[0] in producers and producers[softmax[0].input[0]].op_type == "DequantizeLinear":
        logits = producers[softmax[0].input[0]].input[0]
        model.graph.output.append(onnx.helper.make_tensor_value_info(logits, onnx.TensorProto.INT8, None))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"]), logits


def table(rows: list[dict], n: int) -> str:
    """The Markdown table with its provenance line."""
    lines = [f"{provenance('python bench/onnx_models.py --update-readme')}; {n} seeded random "
             "int8 inputs per model; onnxruntime with `ORT_ENABLE_BASIC`.", "",
             "| model (int8 QDQ ONNX) | kernel ops | MACs | peak SRAM (B) | flash, constants (B) | top-1 agreement "
             "with onnxruntime | outputs identical | max / mean output diff (steps) | max diff before softmax "
             "(steps) | compile (s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        agree = "n/a (regression)" if r["agree"] != r["agree"] else f"{100 * r['agree']:.1f}%"
        lines.append(f"| {r['model']} | {r['ops']} | {r['macs']:,} | {r['sram']:,} | {r['flash']:,} | {agree} | "
                     f"{100 * r['exact']:.1f}% | {r['max_diff']} / {r['mean_diff']:.3f} | "
                     f"{'-' if r['logits_diff'] is None else r['logits_diff']} | {r['compile_s']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    """Run the benchmark and print (optionally store) the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", type=Path, default=ROOT.parent / "shared" / "models" / "derived_onnx")
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--update-readme", action="store_true")
    args = ap.parse_args()
    if not args.models_dir.is_dir():
        print(f"bench: {args.models_dir} not found", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for m in MODELS:
            rows.append(bench_model(args.models_dir / m, args.n, Path(tmp)))
            print(f"  {m}: done", file=sys.stderr)
    text = table(rows, args.n)
    print(text)
    if args.update_readme:
        update_readme("onnx_models", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
