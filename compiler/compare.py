"""``mcc compare``: run mcc and its peers on one model and put memory, flash, latency and agreement side by side.

Peers: TensorFlow Lite Micro (``tflm``, PyPI ``tflite-micro``, a real TFLM build for x86), TVM (``tvm``, PyPI
``apache-tvm``: Relax frontend, ``llvm`` target, Relax VM) and onnxruntime (``ort``). Each peer is optional (the
``peers`` extra); a missing one is reported as "not installed" and the others still run.

Every runtime gets the same ``n`` seeded random inputs in the model's input shape and dtype. mcc's generated C is
built with ``-O3`` for the host and timed inside one process (the runner's ``MCC_REPEAT``); peers are timed in
their own loops around one inference call (onnxruntime with one thread). Agreement is always measured against mcc's
outputs, in output quantization steps.

TFLM runs in child processes: an arena that is too small can crash it, and ``print_allocations()`` writes to the
C-level stderr, which a child's captured stderr holds. TFLM reads only ``.tflite`` and onnxruntime only ONNX, so a
``.tflite`` model is paired with an ONNX form of the same network (``--onnx``, or the ``derived_onnx/`` file beside
an MLPerf Tiny model); TVM reads the ``.tflite`` with its Relax TFLite frontend and falls back to the ONNX form.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compiler.errors import MccError

PEERS = ("tflm", "tvm", "ort")
PEER_TITLES = {"mcc": "mcc (C, -O3)", "tflm": "TFLite Micro", "tvm": "TVM (Relax VM, llvm)", "ort": "onnxruntime"}
TIME_BUDGET_S = 0.5
"""Each runtime is timed for about this long (at least 10 and at most 2000 inferences) unless ``repeat`` is given."""
BATCHES = 5
"""Timed inferences are split into this many batches; the fastest batch's mean is the latency."""


@dataclass(frozen=True)
class InputSpec:
    """One model input as every runtime takes it: name, shape (batch included) and NumPy dtype name."""

    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass
class Agreement:
    """How a peer's outputs differ from mcc's on the same inputs (differences in output quantization steps)."""

    max_diff_steps: float
    mean_diff_steps: float
    identical: float
    """Fraction of output elements equal to mcc's (within half a step for float outputs)."""
    top1: float | None
    """Fraction of samples whose argmax of the first output agrees; ``None`` for single-value outputs."""


@dataclass
class PeerResult:
    """One column of the comparison: a runtime's memory, flash, latency and agreement, or why it is missing."""

    peer: str
    status: str = "ok"
    """``ok``, ``not installed``, ``unavailable: <reason>`` or ``error: <message>``."""
    model: str | None = None
    sram_bytes: int | None = None
    sram_note: str = ""
    sram_head: int | None = None
    """TFLM only: the arena's head (planned activations) within ``sram_bytes``."""
    flash_bytes: int | None = None
    flash_note: str = ""
    latency_ms: float | None = None
    latency_runs: int = 0
    setup_s: float | None = None
    agreement: Agreement | None = None
    notes: list[str] = field(default_factory=list)
    outputs: list[np.ndarray] | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """Whether the runtime ran."""
        return self.status == "ok"


@dataclass
class CompareResult:
    """The whole comparison: the model, the input set and one :class:`PeerResult` per runtime (mcc first)."""

    model: str
    onnx: str | None
    n: int
    seed: int
    inputs: list[InputSpec]
    results: list[PeerResult]

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (without the output arrays)."""
        d = asdict(self)
        for r in d["results"]:
            r.pop("outputs", None)
        return d


# ---------------------------------------------------------------------------------------------------------------
# Inputs, timing, agreement


def make_inputs(specs: Sequence[InputSpec], n: int, seed: int) -> list[np.ndarray]:
    """``n`` seeded random samples per input, stacked as ``[n, *shape]``: full-range integers, floats in [0, 1)."""
    rng = np.random.default_rng(seed)
    out = []
    for s in specs:
        dt = np.dtype(s.dtype)
        if dt.kind in "iu":
            info = np.iinfo(dt)
            out.append(rng.integers(info.min, info.max, (n, *s.shape), endpoint=True).astype(dt))
        else:
            out.append(rng.random((n, *s.shape)).astype(dt))
    return out


def auto_runs(seconds_per_run: float, repeat: int | None) -> int:
    """How many inferences to time: ``repeat``, or enough for :data:`TIME_BUDGET_S` (10 … 2000)."""
    if repeat:
        return repeat
    return int(min(2000, max(10, TIME_BUDGET_S / max(seconds_per_run, 1e-7))))


def time_calls(fn: Callable[[], object], repeat: int | None) -> tuple[float, int]:
    """Seconds per call of ``fn`` and the number of timed calls.

    After a warm-up call the calls are timed in :data:`BATCHES` batches and the fastest batch's mean is kept (like
    ``timeit``), so a busy machine inflates the figure less.
    """
    fn()
    t = time.perf_counter()
    fn()
    runs = auto_runs(time.perf_counter() - t, repeat)
    per_batch = max(1, runs // BATCHES)
    best = float("inf")
    for _ in range(BATCHES):
        t = time.perf_counter()
        for _ in range(per_batch):
            fn()
        best = min(best, (time.perf_counter() - t) / per_batch)
    return best, per_batch * BATCHES


def agreement(ours: Sequence[np.ndarray], theirs: Sequence[np.ndarray],
              scales: Sequence[float | None]) -> Agreement:
    """Compare stacked outputs ``[n, ...]``; float outputs are measured in steps of their quantization scale."""
    if len(ours) != len(theirs):
        raise MccError(f"{len(theirs)} outputs, mcc has {len(ours)}")
    n = ours[0].shape[0]
    diffs = []
    for a, b, scale in zip(ours, theirs, scales, strict=True):
        a2, b2 = np.asarray(a).reshape(n, -1), np.asarray(b).reshape(n, -1)
        if a2.shape != b2.shape:
            raise MccError(f"output of {b2.shape[1]} elements, mcc's has {a2.shape[1]}")
        d = np.abs(a2.astype(np.float64) - b2.astype(np.float64))
        if np.issubdtype(a2.dtype, np.floating) or np.issubdtype(b2.dtype, np.floating):
            d = d / scale if scale else d
            d = np.where(d < 0.5, 0.0, d)
        diffs.append(d)
    d = np.concatenate(diffs, axis=1)
    first_a, first_b = np.asarray(ours[0]).reshape(n, -1), np.asarray(theirs[0]).reshape(n, -1)
    top1 = float(np.mean(first_a.argmax(1) == first_b.argmax(1))) if first_a.shape[1] > 1 else None
    return Agreement(float(d.max()), float(d.mean()), float(np.mean(d == 0)), top1)


def _availability(module: str) -> str | None:
    """``None`` when ``module`` imports, else the status to show: "not installed" or why importing failed."""
    try:
        importlib.import_module(module)
    except ImportError:
        return "not installed"
    except Exception as e:  # a broken install (missing shared library, ABI mismatch) is not a crash of mcc
        return f"unavailable: importing {module} failed: {_one_line(e)}"
    return None


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1] if text else ''}".strip().rstrip(":")


# ---------------------------------------------------------------------------------------------------------------
# mcc


@dataclass
class _MccBuild:
    project: Path
    report: dict[str, Any]


def onnx_form_of(model: Path) -> Path | None:
    """The ONNX form of a ``.tflite`` model we converted: ``…/models/derived_onnx/<dir>_<stem>[.qdq].onnx``."""
    base = model.parent.parent / "derived_onnx" / f"{model.parent.name}_{model.stem}"
    for candidate in (base.with_name(base.name + ".qdq.onnx"), base.with_name(base.name + ".onnx")):
        if candidate.is_file():
            return candidate
    return None


def compile_mcc(model: Path, onnx_form: Path | None, workdir: Path, *, opt_level: int = 3,
                target: str = "cortex-m7") -> tuple[PeerResult, _MccBuild | None]:
    """Compile with mcc (budgets lifted: compare measures, it does not enforce) and build the C with ``-O3``.

    A ``.tflite`` model that mcc cannot read yet is compiled from its ONNX form, and the note says so.
    """
    from backends.c.build import build
    from compiler.driver import compile_graph, model_name, prepare_model
    from compiler.targets import get_target

    res = PeerResult("mcc")
    tgt = get_target(target, sram=1 << 40, flash=1 << 40)
    t0 = time.perf_counter()
    source = model
    try:
        prepared = prepare_model(model, opt_level=opt_level, target=tgt.name)
    except MccError as e:
        if model.suffix.lower() != ".tflite" or onnx_form is None:
            raise
        res.notes.append(f"compiled from the ONNX form {onnx_form.name} ({_one_line(e)})")
        source = onnx_form
        prepared = prepare_model(onnx_form, opt_level=opt_level, target=tgt.name)
    name = model_name(source, None)
    project = workdir / name
    report = compile_graph(prepared.graph, project, name=name, target=tgt, ins=prepared.inputs,
                           outs=prepared.outputs, source=source.name, opt_level=opt_level, pipeline=prepared.pipeline)
    build(project, opt="-O3")  # the first build of a fresh project: later cached builds (run_project) reuse it
    res.setup_s = time.perf_counter() - t0
    res.model = source.name
    res.sram_bytes = report["peak_sram_bytes"]
    res.sram_note = "static arena (activations)"
    res.flash_bytes = report["flash_bytes"]
    res.flash_note = "weights + tables"
    res.notes.append(f"-O{opt_level} for {target}")
    return res, _MccBuild(project, report)


def mcc_input_specs(report: dict[str, Any]) -> list[InputSpec]:
    """The model's inputs as mcc's report describes them (model shape and dtype)."""
    from compiler.ir import DType

    return [InputSpec(i["name"], tuple(i["model_shape"]), DType(i["model_dtype"]).np.name) for i in report["inputs"]]


def run_mcc(res: PeerResult, built: _MccBuild, inputs: Sequence[np.ndarray], repeat: int | None) -> None:
    """Run the host build on the inputs (outputs into ``res``) and time one inference with ``MCC_REPEAT``."""
    from compiler.runner import _to_c, run_project

    report = built.report
    outs = run_project(built.project, {s["name"]: x for s, x in zip(report["inputs"], inputs, strict=True)})
    res.outputs = [np.asarray(outs[o["name"]]) for o in report["outputs"]]
    runner = built.project / "build" / "host" / f"{report['name']}_run"
    with tempfile.TemporaryDirectory() as tmp:
        fin = Path(tmp) / "in.bin"
        first = [_to_c(s, x[:1])[0] for s, x in zip(report["inputs"], inputs, strict=True)]
        fin.write_bytes(b"".join(np.ascontiguousarray(a).tobytes() for a in first))

        def timed(count: int) -> float:
            r = subprocess.run([str(runner), str(fin), str(Path(tmp) / "out.bin"), "1"], capture_output=True,
                               text=True, env={**os.environ, "MCC_REPEAT": str(count)})
            m = re.search(r"mcc-repeat (\d+) (\d+)", r.stderr)
            if r.returncode != 0 or m is None:
                raise MccError(f"{runner.name} failed to time inferences: {r.stderr.strip()[-300:]}")
            return int(m.group(2)) * 1e-9 / int(m.group(1))

        per_batch = max(1, auto_runs(timed(3), repeat) // BATCHES)
        res.latency_ms = min(timed(per_batch) for _ in range(BATCHES)) * 1e3
        res.latency_runs = per_batch * BATCHES


# ---------------------------------------------------------------------------------------------------------------
# TFLite Micro (in child processes)

_ALLOC_RE = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")


def _tflm_child_run(model: Path, arena: int, inputs: Sequence[np.ndarray] | None, repeat: int | None,
                    workdir: Path) -> tuple[dict[str, Any] | None, dict[str, int], list[np.ndarray], str]:
    """One TFLM child: (its JSON summary or None if it failed, the arena figures it printed, outputs, stderr)."""
    fin = workdir / "tflm_in.npz"
    fout = workdir / "tflm_out.npz"
    fout.unlink(missing_ok=True)
    if inputs is not None:
        np.savez(fin, *inputs)
    args = [sys.executable, "-m", "compiler.compare", "--tflm-child", str(model), str(arena),
            str(fin) if inputs is not None else "-", str(fout), str(repeat or 0)]
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    try:
        r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    except subprocess.TimeoutExpired:
        return None, {}, [], "timed out after 600 s"
    alloc = {k: int(v) for k, v in _ALLOC_RE.findall(r.stderr)}
    summary = None
    if r.returncode == 0 and r.stdout.strip():
        summary = json.loads(r.stdout.strip().splitlines()[-1])
    outs: list[np.ndarray] = []
    if summary is not None and fout.is_file():
        with np.load(fout) as data:
            outs = [data[f"arr_{i}"] for i in range(len(data.files))]
    return summary, alloc, outs, r.stderr


def tflm_child_main(argv: Sequence[str]) -> int:
    """Child-process side of the TFLM peer: ``MODEL ARENA IN.npz|- OUT.npz REPEAT``; prints a JSON summary.

    Allocates the interpreter with an ``ARENA``-byte arena, runs every sample of ``IN.npz`` (or one sample of
    zeros), writes the stacked outputs, times ``invoke()`` and finally calls ``print_allocations()`` (C stderr).
    """
    from tflite_micro import runtime

    model, arena, fin, fout, repeat = argv[0], int(argv[1]), argv[2], argv[3], int(argv[4])
    data = Path(model).read_bytes()
    graph = runtime.convert_bytearray_to_object(data).subgraphs[0]
    interp = runtime.Interpreter.from_bytes(data, arena_size=arena)
    in_details = [interp.get_input_details(i) for i in range(len(graph.inputs))]
    out_details = [interp.get_output_details(i) for i in range(len(graph.outputs))]
    if fin == "-":
        xs = [np.zeros((1, *d["shape"]), d["dtype"]) for d in in_details]
    else:
        with np.load(fin) as f:
            xs = [f[f"arr_{i}"] for i in range(len(f.files))]
    n = xs[0].shape[0]
    outs: list[list[np.ndarray]] = [[] for _ in out_details]

    def set_sample(k: int) -> None:
        for i, (x, d) in enumerate(zip(xs, in_details, strict=True)):
            interp.set_input(x[k].astype(d["dtype"]).reshape(d["shape"]), i)

    for k in range(n):
        set_sample(k)
        interp.invoke()
        for j in range(len(out_details)):
            outs[j].append(np.array(interp.get_output(j)))
    np.savez(fout, *[np.stack(o) for o in outs])
    summary: dict[str, Any] = {
        "inputs": [{"shape": [int(s) for s in d["shape"]], "dtype": np.dtype(d["dtype"]).name} for d in in_details],
    }
    if repeat >= 0:
        set_sample(0)
        seconds, runs = time_calls(interp.invoke, repeat or None)
        summary.update(latency_s=seconds, runs=runs)
    sys.stdout.write(json.dumps(summary) + "\n")
    sys.stdout.flush()
    interp.print_allocations()
    return 0


def run_tflm(model: Path, inputs: Sequence[np.ndarray] | None, repeat: int | None, workdir: Path) -> PeerResult:
    """TFLM: the smallest arena that works (printed total, checked in a child; searched if it does not), the
    flatbuffer size, ``invoke()`` latency and outputs."""
    res = PeerResult("tflm", model=model.name)
    missing = _availability("tflite_micro")
    if missing:
        res.status = missing
        return res
    if model.suffix.lower() != ".tflite":
        res.status = "unavailable: TFLM reads only .tflite models"
        return res
    t0 = time.perf_counter()
    big = max(10 * model.stat().st_size, 1 << 20)
    summary, alloc, _, err = _tflm_child_run(model, big, None, -1, workdir)
    if summary is None or "total" not in alloc:
        res.status = f"error: TFLM failed with a {big:,}-byte arena: {_last_line(err)}"
        return res
    arena = alloc["total"]
    summary, _, outs, err = _tflm_child_run(model, arena, inputs, repeat, workdir)
    if summary is None:  # the printed total is not enough: binary search for the smallest arena that runs
        lo, hi = arena, big
        while hi - lo > 16:
            mid = (lo + hi) // 2
            ok = _tflm_child_run(model, mid, None, -1, workdir)[0] is not None
            lo, hi = (lo, mid) if ok else (mid, hi)
        arena = hi
        summary, _, outs, err = _tflm_child_run(model, arena, inputs, repeat, workdir)
        if summary is None:
            res.status = f"error: TFLM failed: {_last_line(err)}"
            return res
        res.notes.append(f"printed arena total {alloc['total']:,} B was too small")
    res.setup_s = time.perf_counter() - t0
    res.sram_bytes = arena
    res.sram_head = alloc.get("head")
    res.sram_note = "smallest arena that runs (head = planned activations; the rest is persistent runtime data)"
    res.flash_bytes = model.stat().st_size
    res.flash_note = "flatbuffer (weights + graph); interpreter code not counted"
    res.latency_ms = summary["latency_s"] * 1e3
    res.latency_runs = summary["runs"]
    res.outputs = outs if inputs is not None else None
    res.notes.append("x86 build of PyPI tflite-micro (portable kernels)")
    return res


def tflm_input_specs(model: Path, workdir: Path) -> list[InputSpec] | None:
    """The model's inputs as TFLM reports them (used only when neither mcc nor an ONNX form gives them)."""
    if _availability("tflite_micro") or model.suffix.lower() != ".tflite":
        return None
    summary = _tflm_child_run(model, max(10 * model.stat().st_size, 1 << 20), None, -1, workdir)[0]
    if summary is None:
        return None
    return [InputSpec(f"input{i}", tuple(d["shape"]), d["dtype"]) for i, d in enumerate(summary["inputs"])]


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip() and "RecordingMicroAllocator" not in ln]
    return lines[-1].strip()[:300] if lines else "crashed without a message"


# ---------------------------------------------------------------------------------------------------------------
# ONNX peers


def _onnx_inputs(model: Any) -> list[Any]:
    inits = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def onnx_input_specs(path: Path) -> list[InputSpec]:
    """The ONNX model's inputs (a symbolic batch dimension taken as 1)."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path), load_external_data=False)
    specs = []
    for vi in _onnx_inputs(model):
        tt = vi.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in tt.shape.dim)
        specs.append(InputSpec(vi.name, shape, np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)).name))
    return specs


def _initializer_bytes(path: Path) -> int:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    return sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer)


def run_ort(path: Path, inputs: Sequence[np.ndarray], repeat: int | None) -> PeerResult:
    """onnxruntime (CPU provider, one thread, default graph optimizations)."""
    res = PeerResult("ort", model=path.name)
    missing = _availability("onnxruntime")
    if missing:
        res.status = missing
        return res
    ort = importlib.import_module("onnxruntime")
    t0 = time.perf_counter()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    if path.name.endswith(".mcc-qdq.onnx"):
        # ORT's extended fusions turn the export's DQ -> AveragePool -> Q into a QLinearAveragePool that its own
        # type inference then rejects; the basic level runs it
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        res.notes.append("graph optimisations: basic (the extended QDQ fusions reject this export)")
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    res.setup_s = time.perf_counter() - t0
    n = inputs[0].shape[0]
    runs = [sess.run(None, {nm: x[k] for nm, x in zip(names, inputs, strict=True)}) for k in range(n)]
    res.outputs = [np.stack([np.asarray(r[j]) for r in runs]) for j in range(len(runs[0]))]
    feed = {nm: x[0] for nm, x in zip(names, inputs, strict=True)}
    seconds, res.latency_runs = time_calls(lambda: sess.run(None, feed), repeat)
    res.latency_ms = seconds * 1e3
    res.sram_note = "n/a: allocates at run time (no static plan)"
    res.flash_bytes = _initializer_bytes(path)
    res.flash_note = "ONNX initializers"
    res.notes.append(f"onnxruntime {ort.__version__}, 1 thread")
    return res


def _relax_constant_bytes(func: Any) -> int:
    """Bytes of the distinct constants a Relax function's bindings use (the weights it carries)."""
    from tvm import relax
    from tvm.ir.expr import Constant

    seen: dict[Any, int] = {}

    def walk(e: Any) -> None:
        if isinstance(e, Constant):  # tensors hold ``.value.numpy()``; scalar immediates count as nothing
            value: Any = getattr(e, "value", None)
            seen[e] = value.numpy().nbytes if hasattr(value, "numpy") else 0
        elif isinstance(e, relax.Call):
            for a in e.args:
                walk(a)
        elif isinstance(e, relax.Tuple):
            for a in e.fields:
                walk(a)

    for block in func.body.blocks:
        for b in block.bindings:
            walk(b.value)
    return sum(seen.values())


def _relax_planned_storage(func: Any) -> int | None:
    """Bytes of the storages the Relax VM allocates (``StaticPlanBlockMemory``'s plan); ``None`` if symbolic."""
    from tvm import relax

    total = 0
    for block in func.body.blocks:
        for b in block.bindings:
            v = b.value
            if isinstance(v, relax.Call) and getattr(v.op, "name", "") == "relax.vm.alloc_storage":
                size = v.args[0]
                if not all(hasattr(x, "value") for x in size.values):
                    return None
                total += int(size.values[0].value)
    return total


def _tvm_import(path: Path, inputs: Sequence[np.ndarray]) -> Any:
    """The Relax module of a ``.tflite`` model (TVM's TFLite frontend) or an ONNX model (its ONNX frontend)."""
    if path.suffix.lower() == ".tflite":
        import tflite

        from_tflite = importlib.import_module("tvm.relax.frontend.tflite").from_tflite
        return from_tflite(tflite.Model.GetRootAsModel(path.read_bytes(), 0))
    import onnx

    from_onnx = importlib.import_module("tvm.relax.frontend.onnx").from_onnx
    model = onnx.load(str(path))
    shapes = {vi.name: list(x.shape[1:]) for vi, x in zip(_onnx_inputs(model), inputs, strict=True)}
    return from_onnx(model, shape_dict=shapes, keep_params_in_input=False)


def run_tvm(sources: Sequence[Path], inputs: Sequence[np.ndarray], repeat: int | None) -> PeerResult:
    """TVM: the first of ``sources`` its Relax frontends import and build (default pipeline, ``llvm``), run on the
    Relax VM; SRAM is the VM's planned storage, read from the lowered IR."""
    res = PeerResult("tvm")
    missing = _availability("tvm.relax")
    if missing:
        res.status = missing
        return res
    tvm = importlib.import_module("tvm")
    relax = importlib.import_module("tvm.relax")
    target = tvm.target.Target({"kind": "llvm"})
    failures: list[str] = []
    t0 = time.perf_counter()
    for path in sources:
        try:
            mod = _tvm_import(path, inputs)
            with target:
                lowered = relax.get_pipeline("default")(mod)
            vm = relax.VirtualMachine(relax.build(lowered, target, relax_pipeline=None), tvm.cpu())
            break
        except Exception as e:  # an unsupported model is a result of the comparison, not a crash of mcc
            failures.append(f"{path.name}: {_one_line(e)}")
    else:
        res.status = "error: " + "; ".join(failures)
        return res
    res.setup_s = time.perf_counter() - t0
    res.model = path.name
    res.notes += [f"could not build {f}" for f in failures]
    res.flash_bytes = _relax_constant_bytes(mod["main"])
    res.flash_note = "Relax module constants"
    storage = _relax_planned_storage(lowered["main"])
    if storage is None:
        res.sram_note = "n/a: the VM plan has symbolic sizes"
    else:
        res.sram_bytes = storage
        res.sram_note = "Relax VM planned storage (TVM's frontends dequantize: float intermediates)"
    n = inputs[0].shape[0]
    outs: list[list[np.ndarray]] = []
    for k in range(n):
        r = vm["main"](*[tvm.runtime.tensor(np.ascontiguousarray(x[k])) for x in inputs])
        flat = [r] if hasattr(r, "numpy") else list(r)
        outs.append([np.asarray(o.numpy()) for o in flat])
    res.outputs = [np.stack([o[j] for o in outs]) for j in range(len(outs[0]))]
    args = [tvm.runtime.tensor(np.ascontiguousarray(x[0])) for x in inputs]
    seconds, res.latency_runs = time_calls(lambda: vm["main"](*args), repeat)
    res.latency_ms = seconds * 1e3
    res.notes.append(f"apache-tvm {tvm.__version__}; microTVM/AOT/USMP no longer exist in TVM")
    return res


# ---------------------------------------------------------------------------------------------------------------
# The comparison


def parse_peers(text: str) -> list[str]:
    """``tflm,tvm,ort`` → a list of known peer names; an unknown name is a one-line error."""
    names = [p.strip().lower() for p in text.split(",") if p.strip()]
    aliases = {"onnxruntime": "ort", "tflite-micro": "tflm", "tflite_micro": "tflm"}
    names = [aliases.get(p, p) for p in names]
    unknown = [p for p in names if p not in PEERS]
    if unknown:
        raise MccError(f"--against: unknown peer '{unknown[0]}'; known peers: {', '.join(PEERS)}")
    return list(dict.fromkeys(names))


def compare(model: Path, *, against: Sequence[str] = PEERS, onnx: Path | None = None, n: int = 100, seed: int = 0,
            repeat: int | None = None, opt_level: int = 3, target: str = "cortex-m7",
            workdir: Path | None = None, log: Callable[[str], None] | None = None) -> CompareResult:
    """Run mcc and each peer in ``against`` on ``model`` with ``n`` seeded random inputs; returns every column.

    A ``.tflite`` model pairs with ``onnx`` (or its ``derived_onnx/`` form) for the ONNX peers; an ONNX model is
    its own ONNX form (and has no TFLM column). Failures of a peer are recorded in its column, not raised.
    """
    if not model.is_file():
        raise MccError(f"no such model file: {model}")
    if model.suffix.lower() not in (".onnx", ".tflite", ".mir"):
        raise MccError(f"{model}: unknown model format '{model.suffix}' (expected .onnx, .tflite or .mir)")
    if onnx is not None and not onnx.is_file():
        raise MccError(f"--onnx: no such file: {onnx}")
    if n < 1:
        raise MccError(f"-n must be at least 1 (got {n})")
    say = log or (lambda _msg: None)
    onnx_form = model if model.suffix.lower() == ".onnx" else (onnx or onnx_form_of(model))
    with tempfile.TemporaryDirectory(prefix="mcc-compare-") as tmp_name:
        tmp = workdir or Path(tmp_name)
        say("mcc: compiling")
        built = None
        try:
            ours, built = compile_mcc(model, onnx_form, tmp, opt_level=opt_level, target=target)
        except MccError as e:
            ours = PeerResult("mcc", status=f"error: {e}".splitlines()[0], model=model.name)
        exported = None
        if onnx_form is None and built is not None and model.suffix.lower() == ".tflite" and all(
                io["model_dtype"] == "i8" for io in (*built.report["inputs"], *built.report["outputs"])):
            say("mcc: exporting an ONNX QDQ form for the ONNX peers")
            exported = _export_qdq(model, tmp)
            onnx_form = exported or None
        if built is not None:
            specs = mcc_input_specs(built.report)
        elif onnx_form is not None:
            specs = onnx_input_specs(onnx_form)
        else:
            specs = tflm_input_specs(model, tmp) or []
        inputs = make_inputs(specs, n, seed) if specs else None
        if built is not None and inputs is not None:
            say("mcc: running")
            try:
                run_mcc(ours, built, inputs, repeat)
            except MccError as e:
                ours.status = f"error: {e}".splitlines()[0]
        results = [ours]
        for peer in against:
            say(f"{peer}: running")
            r = _run_peer(peer, model, onnx_form, inputs, repeat, tmp)
            if exported is not None and r.model == exported.name:
                r.notes.append("ran mcc's ONNX QDQ export of the .tflite (compiler/export_onnx.py)")
            results.append(r)
    scales = [o["scale"] if o["model_dtype"].startswith("f") else None
              for o in (built.report["outputs"] if built is not None else [])]
    for r in results[1:]:
        if r.ok and ours.ok and r.outputs is not None and ours.outputs is not None:
            try:
                r.agreement = agreement(ours.outputs, r.outputs, scales)
            except MccError as e:
                r.notes.append(f"outputs not comparable: {e}")
    onnx_text = None if onnx_form is None else (f"{onnx_form.name} (exported by mcc)" if exported else str(onnx_form))
    return CompareResult(str(model), onnx_text, n, seed, specs, results)


def _export_qdq(model: Path, workdir: Path) -> Path | None:
    """mcc's ONNX QDQ export of an int8 ``.tflite`` (None when an op has no ONNX form yet)."""
    from compiler.driver import prepare_model
    from compiler.export_onnx import export_onnx

    try:
        graph = prepare_model(model, opt_level=2).graph
        return export_onnx(graph, workdir / f"{model.stem}.mcc-qdq.onnx")
    except MccError:
        return None


def _run_peer(peer: str, model: Path, onnx_form: Path | None, inputs: list[np.ndarray] | None,
              repeat: int | None, workdir: Path) -> PeerResult:
    try:
        if peer == "tflm":
            return run_tflm(model, inputs, repeat, workdir)
        missing = _availability({"tvm": "tvm.relax", "ort": "onnxruntime"}[peer])
        if missing:
            return PeerResult(peer, status=missing)
        if inputs is None:
            return PeerResult(peer, status="unavailable: the model's inputs are unknown")
        if peer == "tvm":
            sources = [p for p in (model if model.suffix.lower() == ".tflite" else None, onnx_form) if p is not None]
            if not sources:
                return PeerResult(peer, status="unavailable: TVM reads only .tflite and ONNX models")
            return run_tvm(sources, inputs, repeat)
        if onnx_form is None:
            return PeerResult(peer, status="unavailable: no ONNX form (give one with --onnx)",
                              notes=[f"onnxruntime reads only ONNX, and no ONNX form of {model.name} was given or "
                                     "found in derived_onnx/"])
        return run_ort(onnx_form, inputs, repeat)
    except Exception as e:  # a peer's failure is a result of the comparison, not an mcc crash
        return PeerResult(peer, status=f"error: {_one_line(e)}")


# ---------------------------------------------------------------------------------------------------------------
# Presentation

STATUS_WIDTH = 48
"""Statuses longer than this are cut in the table (the JSON and the notes keep them whole)."""
COLUMNS = ("runtime", "status", "peak SRAM (B)", "flash (B)", "latency (ms)", "max |diff| (steps)",
           "identical", "top-1 agree")


def table_rows(result: CompareResult) -> list[list[str]]:
    """One row of :data:`COLUMNS` per runtime."""
    rows = []
    for r in result.results:
        a = r.agreement
        rows.append([
            PEER_TITLES[r.peer],
            r.status if len(r.status) <= STATUS_WIDTH else r.status[:STATUS_WIDTH - 1] + "…",
            ("n/a" if r.ok else "-") if r.sram_bytes is None else
            f"{r.sram_bytes:,}" + (f" (head {r.sram_head:,})" if r.sram_head is not None else ""),
            f"{r.flash_bytes:,}" if r.flash_bytes is not None else "-",
            f"{r.latency_ms:.3f}" if r.latency_ms is not None else "-",
            ("(reference)" if r.peer == "mcc" and r.ok else "-") if a is None else f"{a.max_diff_steps:g}",
            "-" if a is None else f"{100 * a.identical:.1f}%",
            "-" if a is None or a.top1 is None else f"{100 * a.top1:.1f}%",
        ])
    return rows


def format_table(result: CompareResult, *, markdown: bool = False) -> str:
    """The comparison as an aligned plain-text table (or Markdown) followed by one note line per runtime."""
    rows = table_rows(result)
    if markdown:
        lines = ["| " + " | ".join(COLUMNS) + " |", "|---|---|" + "---:|" * (len(COLUMNS) - 2)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    else:
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(COLUMNS)]
        fmt = "  ".join(f"{{:{'<' if i < 2 else '>'}{w}}}" for i, w in enumerate(widths))
        lines = [fmt.format(*COLUMNS), "  ".join("-" * w for w in widths)]
        lines += [fmt.format(*r) for r in rows]
    notes = []
    for r in result.results:
        parts = [f"ran {r.model}"] if r.model and r.ok else []
        parts += [f"SRAM: {r.sram_note}"] if r.sram_note else []
        parts += [f"flash: {r.flash_note}"] if r.flash_note else []
        parts += [f"{r.latency_runs} timed runs"] if r.latency_runs else []
        parts += [f"setup {r.setup_s:.1f} s"] if r.setup_s is not None else []
        parts += r.notes
        parts += [r.status] if len(r.status) > STATUS_WIDTH else []
        if parts:
            notes.append(f"{'- ' if markdown else ''}{PEER_TITLES[r.peer]}: " + "; ".join(parts))
    return "\n".join(lines) + "\n" + ("\n" if markdown else "") + "\n".join(notes) + "\n"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--tflm-child":
        sys.exit(tflm_child_main(sys.argv[2:]))
    sys.exit("usage: mcc compare MODEL (this module's own main is the TFLM child process)")
