"""Compiling a model file into a C project: load → integer graph → optimise → plan memory → emit C → report.

The steps are plain functions so tests, benchmarks and the NAS can run any prefix of them. The output directory is
written through a temporary sibling and renamed into place, so a failure never leaves a half-written project.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from compiler import __version__
from compiler.analysis import layer_table, op_macs
from compiler.errors import DoesNotFitError, MccError, UnsupportedOpError
from compiler.ir import DType, Graph, Value
from compiler.memory import MemoryPlan, plan_from_ir
from compiler.passmanager import PassContext, PassManager, parse_pipeline
from compiler.pipelines import PatchOptions, opt_pipeline
from compiler.targets import Target, get_target

if TYPE_CHECKING:
    from backends.c.lower import Program

REPORT_VERSION = 1


@dataclass(frozen=True)
class IOSpec:
    """One input or output of the compiled model, as the C API and ``mcc run`` see it."""

    name: str
    c_field: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None
    zero_point: int | None
    model_shape: tuple[int, ...]
    model_dtype: str
    perm: tuple[int, ...]
    round_mode: str | None = None


@dataclass(frozen=True)
class LoadedModel:
    """A graph in float or QDQ form plus how its interface maps to the model file's tensors."""

    graph: Graph
    input_perms: tuple[tuple[int, ...], ...]
    output_perms: tuple[tuple[int, ...], ...]
    input_shapes: tuple[tuple[int, ...], ...]
    output_shapes: tuple[tuple[int, ...], ...]


def load_model(path: Path) -> LoadedModel:
    """Read ``.onnx``, ``.tflite`` or ``.mir``."""
    if not path.is_file():
        raise MccError(f"no such model file: {path}")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from frontend.onnx import load_onnx

        m = load_onnx(path)
        return LoadedModel(m.graph, tuple(i.perm for i in m.inputs), tuple(o.perm for o in m.outputs),
                           tuple(i.onnx_shape for i in m.inputs), tuple(o.onnx_shape for o in m.outputs))
    if suffix == ".mir":
        from frontend.mir import parse_file

        g = parse_file(path)
        ident = [tuple(range(v.type.rank)) for v in g.inputs]
        oident = [tuple(range(v.type.rank)) for v in g.outputs]
        return LoadedModel(g, tuple(ident), tuple(oident), tuple(v.type.shape for v in g.inputs),
                           tuple(v.type.shape for v in g.outputs))
    if suffix == ".tflite":
        from frontend.tflite import load_tflite

        t = load_tflite(path)
        return LoadedModel(t.graph, tuple(i.perm for i in t.inputs), tuple(o.perm for o in t.outputs),
                           tuple(i.model_shape for i in t.inputs), tuple(o.model_shape for o in t.outputs))
    raise MccError(f"{path}: unknown model format '{suffix}' (expected .onnx, .tflite or .mir)")


def _has_float_compute(graph: Graph) -> bool:
    return any(r.type.dtype.is_float for op in graph.ops if op.kind not in ("const", "q.dequantize")
               for r in op.results)


def lowering_pipeline(graph: Graph, calibration: str | None) -> str:
    """Passes that turn an imported float/QDQ graph into an integer graph."""
    # QDQ form quantizes activations; a "hybrid" float model (int8 weights behind DequantizeLinear, float
    # activations) has no QuantizeLinear and is quantized like any float model.
    is_qdq = any(op.kind == "q.quantize" for op in graph.ops)
    base = "canonicalize,matmul-to-fc,fold-affine,canonicalize"
    if is_qdq:
        return base + ",fold-qdq,canonicalize,fold-constants,dce"
    if not _has_float_compute(graph):
        return "canonicalize,fold-constants,dce"
    cal = "" if not calibration else "{calibration=" + _quote(calibration) + "}"
    return base + f",fold-constants,dce,quantize{cal},canonicalize,fold-constants,dce"


def _quote(text: str) -> str:
    import re

    return text if re.fullmatch(r"[A-Za-z0-9_.\-/:~+]+", text) else f'"{text}"'


def split_io(graph: Graph, model: LoadedModel) -> tuple[list[IOSpec], list[IOSpec]]:
    """Move the float↔int8 conversions at the graph's edges out of the graph (``mcc run`` does them on the host).

    Afterwards every graph input and output is an integer tensor; the returned specs say how to convert.
    """
    from backends.c.lower import c_identifier

    n_ops = len(graph.ops)
    used: set[str] = set()
    ins: list[IOSpec] = []
    for i, v in enumerate(list(graph.inputs)):
        model_dtype = v.type.dtype
        round_mode = None
        users = v.users
        if v.type.dtype.is_float and users and all(u.kind == "q.quantize" for u in users) and \
                len({u.result.type for u in users}) == 1:
            q_op = users[0]
            round_mode = str(q_op.attrs.get("round_mode", "half_away"))
            new = Value(q_op.result.type, v.name)
            for u in users:
                graph.replace_all_uses(u.result, new)
                graph.erase(u)
            graph.inputs[i] = new
            v = new
        ins.append(_spec(v, c_identifier(str(v.name), used), model.input_shapes[i], model_dtype,
                         model.input_perms[i], round_mode))
    outs: list[IOSpec] = []
    used_out: set[str] = set(used)
    for i, v in enumerate(list(graph.outputs)):
        model_dtype = v.type.dtype
        p = v.producer
        if p is not None and p.kind == "q.dequantize" and not v.uses and graph.outputs.count(v) == 1:
            src = p.operands[0]
            if not graph.is_output(src):
                graph.outputs[i] = src
                graph.erase(p)
                src.name = v.name
                v = src
        outs.append(_spec(v, c_identifier(str(v.name), used_out), model.output_shapes[i], model_dtype,
                          model.output_perms[i], None))
    if len(graph.ops) != n_ops:
        graph.clear_memory_plan()  # the edges changed: a plan made before no longer applies
    return ins, outs


def _spec(v: Value, field: str, model_shape: tuple[int, ...], model_dtype: DType, perm: tuple[int, ...],
          round_mode: str | None) -> IOSpec:
    q = v.type.quant
    scale = q.scale[0] if q is not None and q.is_per_tensor else None
    zp = q.zero_point[0] if q is not None and q.is_per_tensor else None
    return IOSpec(str(v.name), field, v.type.shape, v.type.dtype.value, scale, zp, tuple(model_shape),
                  model_dtype.value, tuple(perm), round_mode)


FLOAT_C_KINDS = frozenset({"q.dequantize", "nn.log_softmax"})
"""Op kinds with float32 C kernels, for a float tail such as TFLite's DEQUANTIZE → LOG_SOFTMAX."""


def check_integer(graph: Graph) -> None:
    """Every tensor the C code touches must be integer, except results of :data:`FLOAT_C_KINDS` ops (whose
    emitters check their operand types); name the first op that breaks this."""
    for v in graph.inputs:
        if v.type.dtype.is_float:
            raise UnsupportedOpError(f"graph input %{v.name} is float and not quantized at the model's edge")
    for op in graph.ops:
        if op.kind in FLOAT_C_KINDS:
            continue
        for r in op.results:
            if r.type.dtype.is_float:
                raise UnsupportedOpError(f"{op.label}: left in float after quantization (no integer form of this "
                                         f"op for its operands); the C backend needs integer tensors")


CODE_RESERVE_BYTES = 160 * 1024
"""Flash kept for code when choosing the GEMM weights' layout: the 16-bit one only if the constants leave this.
MCUNet-VWW at mcc -O3 (patched stage, 3x3/5x5/7x7 depthwise at both strides) needs 127.5 KB of code and harness
on Cortex-M7 at gcc -O3, so 64 KB let its 16-bit layout (932,728 B of constants) overflow a 1 MB flash."""


def plan_and_lower(graph: Graph, name: str, pipeline: str = "", input_fields: dict[Value, str] | None = None,
                   verify_each: bool = True, flash_bytes: int | None = None) -> tuple[MemoryPlan, Program, str]:
    """Check an integer graph, plan its memory if the IR carries no plan yet, and lower it to C calls: the memory
    plan and program ``compile_graph`` writes (and the NAS cost model measures), with ``pipeline`` extended by
    ``plan-memory`` when that ran here. With the target's ``flash_bytes``, the GEMM kernels keep their weights as
    bytes when the 16-bit layout would leave less than :data:`CODE_RESERVE_BYTES` for code."""
    from backends.c.lower import lower

    check_integer(graph)
    if graph.arena_bytes is None:
        PassManager(parse_pipeline("plan-memory"), verify_each=verify_each).run(graph)
        pipeline = ",".join(p for p in (pipeline, "plan-memory") if p)
    plan = plan_from_ir(graph)
    program = lower(graph, plan, name, input_fields)
    constants = sum(a.array.nbytes for a in (*program.weights, *program.tables))
    if flash_bytes is not None and constants + CODE_RESERVE_BYTES > flash_bytes:
        program.use_narrow_gemm()  # the GEMM kernels' 16-bit weights would not fit: keep their bytes
    return plan, program, pipeline


def compile_graph(graph: Graph, out_dir: Path, *, name: str, target: Target, ins: list[IOSpec],
                  outs: list[IOSpec], source: str, opt_level: int, pipeline: str,
                  notes: dict[str, Any] | None = None) -> dict[str, Any]:
    """Plan, lower and write an integer graph as a C project in ``out_dir``; returns the report."""
    from backends.c.emit import IOBinding, write_project

    plan, program, pipeline = plan_and_lower(graph, name, pipeline,
                                             {graph.inputs[i]: s.c_field for i, s in enumerate(ins)},
                                             flash_bytes=target.flash_bytes)
    tables_bytes = sum(a.array.nbytes for a in program.tables)
    weights_bytes = sum(a.array.nbytes for a in program.weights)
    # what a size-first (-Os) build compiles: size-first contents, else the byte layout, else the array
    narrow = "defined(MCC_GEMM_NARROW)"
    size_first_bytes = sum((a.size_first if a.size_first is not None else
                            a.alternative[1] if a.alternative is not None and a.alternative[0] == narrow
                            else a.array).nbytes for a in (*program.weights, *program.tables))
    peak_index = int(np.argmax(plan.live_bytes)) if plan.live_bytes else 0
    report: dict[str, Any] = {
        "report_version": REPORT_VERSION,
        "mcc_version": __version__,
        "model": source,
        "name": name,
        "target": {"name": target.name, "cpu": target.cpu, "board": target.board,
                   "sram_bytes": target.sram_bytes, "flash_bytes": target.flash_bytes},
        "opt_level": opt_level,
        "pipeline": pipeline,
        "macs": sum(op_macs(op) for op in graph.ops),
        "peak_sram_bytes": plan.arena_bytes,
        "arena_bytes": plan.arena_bytes,
        "scratch_bytes": plan.scratch_bytes,
        "stack_bytes": None,
        "flash_bytes": weights_bytes + tables_bytes,
        "weights_bytes": weights_bytes,
        "size_first_flash_bytes": size_first_bytes,
        "inputs": [asdict(s) for s in ins],
        "outputs": [asdict(s) for s in outs],
        "lower_bound_bytes": plan.lower_bound,
        "shared_bytes": plan.shared_bytes(),
        "patch_stage": (notes or {}).get("patch_stage"),
        "layers": [{**asdict(r), "shape": list(r.shape)} for r in layer_table(graph, plan)],
    }
    if report["peak_sram_bytes"] > target.sram_bytes or report["flash_bytes"] > target.flash_bytes:
        peak_op = graph.ops[peak_index] if graph.ops else None
        where = f"; the peak is at %{peak_op.results[0].name} ({peak_op.kind})" if peak_op is not None else ""
        raise DoesNotFitError(
            f"model does not fit {target.name} ({target.board}): needs {report['peak_sram_bytes']:,} B SRAM of "
            f"{target.sram_bytes:,} and {report['flash_bytes']:,} B flash of {target.flash_bytes:,}{where}")
    bindings_in = [IOBinding(s.c_field, graph.inputs[i], _io_doc(s)) for i, s in enumerate(ins)]
    bindings_out = [IOBinding(s.c_field, graph.outputs[i], _io_doc(s)) for i, s in enumerate(outs)]
    _write_atomically(out_dir, lambda d: (write_project(d, program, plan, bindings_in, bindings_out, source),
                                          (d / "report.json").write_text(json.dumps(report, indent=2) + "\n")))
    return report


def _io_doc(s: IOSpec) -> str:
    dims = "".join(f"[{d}]" for d in s.shape)
    q = f", real = {np.float32(s.scale)} * (q - {s.zero_point})" if s.scale is not None else ""
    layout = " NHWC" if len(s.shape) == 4 else ""
    return f"\"{s.name}\" {s.dtype}{dims}{layout}{q}"


def _write_atomically(out_dir: Path, fill: Any) -> None:
    out_dir = out_dir.resolve()
    parent = out_dir.parent
    if not parent.is_dir():
        raise MccError(f"cannot write {out_dir}: directory {parent} does not exist")
    if out_dir.exists() and not out_dir.is_dir():
        raise MccError(f"cannot write {out_dir}: it exists and is not a directory")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.mcc-", dir=parent))
    try:
        fill(tmp)
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=parent))
            out_dir.rename(old / "x")
            tmp.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def model_name(path: Path, name: str | None) -> str:
    """A C-identifier prefix for the model's symbols: ``--name`` or the file stem."""
    import re

    base = name or path.stem.split(".")[0]
    ident = re.sub(r"[^a-z0-9_]", "_", base.lower()).strip("_") or "model"
    if ident[0].isdigit():
        ident = "m_" + ident
    return ident


@dataclass
class PreparedModel:
    """An integer graph ready for a backend, with its interface specs and the pipeline that produced it."""

    graph: Graph
    inputs: list[IOSpec]
    outputs: list[IOSpec]
    pipeline: str
    notes: dict[str, Any] = field(default_factory=dict)
    """What the passes decided (``patch_stage``: split, patches, arenas and MACs with and without)."""


def prepare_model(path: Path, *, opt_level: int = 2, target: str = "cortex-m7", calibration: str | None = None,
                  reproducer_dir: Path | None = None, patch: PatchOptions | None = None) -> PreparedModel:
    """Load a model, lower it to integers and optimise it: the graph the C code will compute, bit for bit."""
    model = load_model(path)
    graph = model.graph
    pipeline, notes = prepare_graph(graph, opt_level=opt_level, target=target, calibration=calibration,
                                    reproducer_dir=reproducer_dir, patch=patch)
    ins, outs = split_io(graph, model)
    return PreparedModel(graph, ins, outs, pipeline, notes)


def prepare_graph(graph: Graph, *, opt_level: int = 2, target: str = "cortex-m7", calibration: str | None = None,
                  reproducer_dir: Path | None = None, patch: PatchOptions | None = None, verify_each: bool = True
                  ) -> tuple[str, dict[str, Any]]:
    """Lower a loaded graph to integers and optimise it in place, as ``mcc`` does: returns the pipeline text and
    what the passes decided. ``verify_each=False`` skips the (read-only) verifier between passes; the graph is the
    same."""
    pipeline = ",".join(p for p in (lowering_pipeline(graph, calibration), opt_pipeline(opt_level, patch)) if p)
    ctx = PassContext(target=target, opt_level=opt_level)
    PassManager(parse_pipeline(pipeline), ctx, verify_each=verify_each, reproducer_dir=reproducer_dir).run(graph)
    return pipeline, ctx.notes


def compile_model(path: Path, out_dir: Path, *, opt_level: int = 2, target: str = "cortex-m7",
                  calibration: str | None = None, name: str | None = None, sram: int | None = None,
                  flash: int | None = None, reproducer_dir: Path | None = None,
                  patch: PatchOptions | None = None) -> dict[str, Any]:
    """The whole ``mcc MODEL -O3 --target T -o DIR`` compilation; returns the report written to DIR/report.json."""
    tgt = get_target(target, sram=sram, flash=flash)
    prepared = prepare_model(path, opt_level=opt_level, target=tgt.name, calibration=calibration,
                             reproducer_dir=reproducer_dir, patch=patch)
    return compile_graph(prepared.graph, out_dir, name=model_name(path, name), target=tgt, ins=prepared.inputs,
                         outs=prepared.outputs, source=path.name, opt_level=opt_level, pipeline=prepared.pipeline,
                         notes=prepared.notes)
