"""``quantize``: post-training int8 quantization of a float graph, calibrated in the reference interpreter."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from compiler.errors import MccError
from compiler.interpreter import run_all
from compiler.ir import DType, Graph, Op, QuantParams, TensorType, Value
from compiler.opdef import get_opdef
from compiler.passmanager import Pass, PassContext
from compiler.quant import dequantize_array, quantize_array
from compiler.rewrite import Rewriter, apply_patterns
from passes._consts import constant_array, erase_if_dead, new_const
from passes.fold_qdq import CONV_LIKE, FIXED_OUTPUT, PATTERNS, SAME_QUANT
from passes.fuse_activation import ACTIVATION_BOUNDS

METHODS = ("minmax", "percentile", "mse")
SYNTHETIC_SAMPLES = 32
"""Samples of the fallback calibration set (uniform in [0, 1], seed 0) used when no data is given."""
FREE_OUTPUT = frozenset({*CONV_LIKE, "nn.add", "nn.mul", "nn.matmul"})
"""Producers whose output quantization is free, so a following relu/relu6/clamp fuses into them (no QDQ between)."""
SHARE_INPUT = SAME_QUANT - {"nn.concat"}
"""Ops whose result takes their (first) input's quantization, as TFLite's converter does."""
MAX_KEPT = 1 << 18
"""Elements per tensor kept (subsampled, seeded) for the percentile and MSE methods."""


# -- calibration data ------------------------------------------------------------------------------------------------
def _as_samples(arr: np.ndarray, v: Value, where: str) -> list[np.ndarray]:
    """Split ``arr`` into samples of ``v``'s shape: one sample, a batch ``[B, *shape]``, or a batch whose leading
    size-1 axis is the batch; 4-D data in NCHW (the ONNX model's layout) is transposed to the graph's NHWC."""
    shape = v.type.shape
    forms: list[tuple[tuple[int, ...], tuple[int, ...] | None]] = [(shape, None)]
    if len(shape) == 4:
        forms.append(((shape[0], shape[3], shape[1], shape[2]), (0, 2, 3, 1)))
    for target, perm in forms:
        if arr.shape == target:
            batch = arr[None]
        elif arr.shape[1:] == target:
            batch = arr
        elif target and target[0] == 1 and arr.shape[1:] == target[1:]:
            batch = arr[:, None]
        else:
            continue
        if perm is not None:
            batch = batch.transpose(0, *(p + 1 for p in perm))
        if v.type.dtype.is_float:
            if not np.issubdtype(batch.dtype, np.number):
                raise MccError(f"{where}: input '{v.name}' must hold numbers, got {batch.dtype}")
            batch = batch.astype(np.float32)
        else:
            if not np.issubdtype(batch.dtype, np.integer):
                raise MccError(f"{where}: input '{v.name}' is {v.type.dtype.value}, got {batch.dtype} data")
            batch = np.clip(batch, v.type.dtype.qmin, v.type.dtype.qmax).astype(v.type.dtype.np)
        return [np.ascontiguousarray(s) for s in batch]
    dims = ", ".join(map(str, shape))
    raise MccError(f"{where}: input '{v.name}' has shape {list(arr.shape)}; expected [B, {dims}] or [{dims}]")


def _load_file(path: Path, graph: Graph) -> list[list[np.ndarray]]:
    """Per graph input, the samples one .npy/.npz file holds."""
    names = [str(v.name) for v in graph.inputs]
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                missing = [n for n in names if n not in data.files]
                if missing:
                    raise MccError(f"calibration file {path}: no array for input(s) {', '.join(missing)} "
                                   f"(it has {', '.join(data.files) or 'none'})")
                arrays = [np.asarray(data[n]) for n in names]
        elif path.suffix == ".npy":
            if len(names) != 1:
                raise MccError(f"calibration file {path}: the graph has {len(names)} inputs; an .npy calibrates "
                               f"only the first of one, use an .npz with arrays named {', '.join(names)}")
            arrays = [np.load(path, allow_pickle=False)]
        else:
            raise MccError(f"calibration file {path}: expected .npy or .npz")
    except MccError:
        raise
    except Exception as e:
        raise MccError(f"cannot read calibration file {path}: {type(e).__name__}: {e}") from None
    per_input = [_as_samples(a, v, f"calibration file {path}") for a, v in zip(arrays, graph.inputs, strict=True)]
    counts = {len(s) for s in per_input}
    if len(counts) > 1:
        raise MccError(f"calibration file {path}: the inputs have different sample counts ({sorted(counts)})")
    return per_input


def load_calibration(spec: str, graph: Graph, num_samples: int = 0) -> list[list[np.ndarray]]:
    """Calibration samples (each a list of arrays, one per graph input) from a .npy, .npz or folder of them."""
    path = Path(spec)
    if not path.exists():
        raise MccError(f"calibration data not found: {spec}")
    files = sorted(p for p in path.iterdir() if p.suffix in (".npy", ".npz")) if path.is_dir() else [path]
    if not files:
        raise MccError(f"calibration folder {spec} holds no .npy or .npz files")
    per_input: list[list[np.ndarray]] = [[] for _ in graph.inputs]
    for f in files:
        for acc, got in zip(per_input, _load_file(f, graph), strict=True):
            acc.extend(got)
    samples = [list(s) for s in zip(*per_input, strict=True)]
    if num_samples > 0:
        samples = samples[:num_samples]
    if not samples:
        raise MccError(f"calibration data {spec} holds no samples")
    return samples


def synthetic_calibration(graph: Graph) -> list[list[np.ndarray]]:
    """The documented fallback: 32 samples, floats uniform in [0, 1], integers uniform over their type (seed 0)."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(SYNTHETIC_SAMPLES):
        sample = []
        for v in graph.inputs:
            t = v.type
            if t.dtype.is_float:
                sample.append(rng.uniform(0.0, 1.0, t.shape).astype(np.float32))
            else:
                sample.append(rng.integers(t.dtype.qmin, t.dtype.qmax + 1, t.shape).astype(t.dtype.np))
        out.append(sample)
    return out


# -- ranges ----------------------------------------------------------------------------------------------------------
@dataclass
class _Stats:
    """Running range of one tensor, plus a seeded subsample of its values for the percentile and MSE methods."""

    lo: float = math.inf
    hi: float = -math.inf
    kept: list[np.ndarray] = field(default_factory=list)

    def add(self, a: np.ndarray, keep: int, rng: np.random.Generator | None) -> None:
        flat = a.reshape(-1).astype(np.float32)
        if flat.size == 0:
            return
        self.lo = min(self.lo, float(flat.min()))
        self.hi = max(self.hi, float(flat.max()))
        if rng is not None:
            self.kept.append(flat if flat.size <= keep else rng.choice(flat, keep, replace=False))


def activation_quant(lo: float, hi: float, dtype: DType = DType.INT8) -> QuantParams:
    """Per-tensor asymmetric parameters covering ``[lo, hi]`` widened to include 0 (zero point within the type)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    span = hi - lo
    if not (math.isfinite(span) and span > 0):
        span = 1.0  # an all-zero (or unseen) tensor: any scale represents it
    levels = dtype.qmax - dtype.qmin
    scale = float(np.float32(span / levels))
    zp = int(np.clip(round(dtype.qmin - lo / scale), dtype.qmin, dtype.qmax))
    return QuantParams.per_tensor(scale, zp)


HARD_SWISH_MIN_INPUT_SCALE = 3.0 / 32768.0 * 128.0 * 2.0 ** -16
"""TFLite's integer HardSwish needs its relu-ish multiplier ``(s_in / 128) / (3 / 32768)`` at least 2^-16 (exponent
-15); a smaller input scale (a range under about 4.6e-5, as in an untrained network) is widened to this."""


def _widened(q: QuantParams, lo: float, hi: float, min_scale: float) -> QuantParams:
    """``q`` (the quantization of ``[lo, hi]``), or the range scaled up about 0 until its scale is above
    ``min_scale``, keeping the zero point."""
    factor = min_scale / float(q.scale[0])
    if factor <= 1.0:
        return q
    while float(q.scale[0]) <= min_scale:
        q = activation_quant(lo * factor, hi * factor)
        factor *= 1.0 + 2.0 ** -12
    return q


def hard_swish_output_quant(src: QuantParams, lo: float, hi: float) -> QuantParams:
    """The int8 quantization of a ``hard_swish`` result calibrated to ``[lo, hi]``, widened when TFLite's kernel
    could not take it.

    TFLite's integer HardSwish rescales its input to ``s_in / 128`` and needs the output multiplier
    ``(s_in / 128) / s_out`` below 1. A calibrated output range more than 128 times narrower than the input's (an
    input reaching far below -3, whose hard-swish is 0) breaks that; the range is then scaled up about 0, keeping
    the zero point where it was, by the least factor (in steps of 2^-12) that the kernel accepts. Anything else is
    the calibrated range unchanged.
    """
    from compiler.ops.activation import hard_swish_params

    inp = TensorType((1,), DType.INT8, src)
    q = activation_quant(lo, hi)
    need = float(src.scale[0]) / 128.0 / float(q.scale[0])
    factor = max(1.0, need)
    for _ in range(64):
        q = activation_quant(lo * factor, hi * factor) if factor > 1.0 else q
        try:
            hard_swish_params(inp, TensorType((1,), DType.INT8, q))
            return q
        except ValueError:
            factor = max(factor, 1.0) * (1.0 + 2.0 ** -12)
    return q  # not representable (the other exponent bound): the op stays float, as any op without an int form


def _choose_range(s: _Stats, method: str, percentile: float) -> tuple[float, float]:
    if method == "minmax" or not s.kept:
        return s.lo, s.hi
    values = np.concatenate(s.kept)
    if method == "percentile":
        return float(np.percentile(values, 100.0 - percentile)), float(np.percentile(values, percentile))
    best, best_err = (s.lo, s.hi), math.inf
    for alpha in np.linspace(0.3, 1.0, 36):
        q = activation_quant(s.lo * alpha, s.hi * alpha)
        deq = dequantize_array(quantize_array(values, q.scale[0], q.zero_point[0], -128, 127), q.scale[0],
                               q.zero_point[0])
        err = float(np.mean((deq - values) ** 2))
        if err < best_err:
            best, best_err = (s.lo * alpha, s.hi * alpha), err
    return best


def weight_quant(w: np.ndarray, axis: int) -> tuple[np.ndarray, QuantParams]:
    """Per-channel symmetric int8 along ``axis``: scale = max|w| / 127, values in [-127, 127]."""
    other = tuple(i for i in range(w.ndim) if i != axis)
    amax = np.max(np.abs(w.astype(np.float64)), axis=other) if other else np.abs(w.astype(np.float64))
    scales = np.where(amax > 0, amax / 127.0, 1.0 / 127.0).astype(np.float32)
    q = QuantParams.per_channel([float(s) for s in scales], [0] * len(scales), axis)
    arr = quantize_array(w, q.scales_for(w.shape), 0, -127, 127)
    return arr.astype(np.int8), q


def _usable_weight(t: TensorType, axis: int) -> bool:
    """Integer weights an integer conv/fc takes as they are: int8, per-tensor or per-channel along ``axis``."""
    return t.dtype is DType.INT8 and t.quant is not None and t.quant.axis in (None, axis)


def _dequantized_constant(v: Value) -> np.ndarray | None:
    """The float values of ``q.dequantize`` of an integer constant."""
    p = v.producer
    assert p is not None
    ints = constant_array(p.operands[0])
    q = p.operands[0].type.quant
    if ints is None or q is None:
        return None
    return dequantize_array(ints, q.scales_for(ints.shape), q.zero_points_for(ints.shape))


# -- the pass --------------------------------------------------------------------------------------------------------
def _is_constant(v: Value, memo: dict[int, bool]) -> bool:
    got = memo.get(id(v))
    if got is not None:
        return got
    p = v.producer
    res = p is not None and (p.kind == "const" or (bool(p.operands) and get_opdef(p.kind).pure and all(
        _is_constant(o, memo) for o in p.operands)))
    memo[id(v)] = res
    return res


@dataclass
class _Plan:
    """Which float values get a quantize/dequantize pair, and how their quantization is chosen."""

    activations: list[Value]
    fused: set[int]
    fixed: dict[int, QuantParams]
    shared: dict[int, Value]
    ranged: list[Value]


def _int8_dequantized(v: Value) -> QuantParams | None:
    """The per-tensor int8 quantization of the integer tensor behind a ``q.dequantize`` producing ``v``."""
    p = v.producer
    if p is None or p.kind != "q.dequantize":
        return None
    t = p.operands[0].type
    return t.quant if t.dtype is DType.INT8 and t.quant is not None and t.quant.is_per_tensor else None


def _shareable(src: Value, act_ids: set[int], fused: set[int]) -> bool:
    """Whether an op can take ``src``'s quantization: an activation that gets one, or an int8 dequantize."""
    return (id(src) in act_ids and id(src) not in fused) or _int8_dequantized(src) is not None


def _plan(graph: Graph) -> _Plan:
    memo: dict[int, bool] = {}
    acts: list[Value] = [v for v in graph.inputs if v.type.dtype.is_float and v.uses]
    fused: set[int] = set()
    fixed: dict[int, QuantParams] = {}
    shared: dict[int, Value] = {}
    ranged: list[Value] = list(acts)
    act_ids = {id(v) for v in acts}
    for op in graph.ops:
        if op.kind in ("const", "q.dequantize") or len(op.results) != 1:
            continue
        r = op.result
        if not r.type.dtype.is_float or _is_constant(r, memo):
            continue
        acts.append(r)
        act_ids.add(id(r))
        users = r.users
        if (op.kind in FREE_OUTPUT and len(r.uses) == 1 and not graph.is_output(r)
                and users[0].kind in ACTIVATION_BOUNDS):
            fused.add(id(r))
        elif op.kind in FIXED_OUTPUT:
            fixed[id(r)] = QuantParams.per_tensor(*FIXED_OUTPUT[op.kind])
        elif op.kind in SHARE_INPUT and _shareable(op.operands[0], act_ids, fused):
            shared[id(r)] = op.operands[0]
        else:
            ranged.append(r)
    return _Plan(acts, fused, fixed, shared, ranged)


def _calibrate(graph: Graph, values: Sequence[Value], samples: list[list[np.ndarray]], method: str
               ) -> dict[int, _Stats]:
    """Run the float graph on every sample and record the range of each value in ``values``."""
    clone = graph.clone()
    originals = list(graph.values())
    copies = list(clone.values())
    key_of = {id(v): f"v{i}" for i, v in enumerate(originals)}
    for i, c in enumerate(copies):
        c.name = f"v{i}"
    stats = {id(v): _Stats() for v in values}
    rng = np.random.default_rng(0) if method != "minmax" else None
    keep = max(1, MAX_KEPT // max(1, len(samples)))
    for sample in samples:
        env = run_all(clone, sample)
        for v in values:
            stats[id(v)].add(env[key_of[id(v)]], keep, rng)
    return stats


def _first_use_anchor(v: Value, order: dict[int, int]) -> Op | None:
    users = [u for u in v.users if id(u) in order]
    return min(users, key=lambda u: order[id(u)]) if users else None


@dataclass(frozen=True)
class Quantize(Pass):
    """Post-training quantization of a float graph into int8 integer ops.

    Calibration: ``calibration`` names a ``.npy`` (a batch ``[B, *input_shape]`` for the graph's single input;
    4-D data in the ONNX model's NCHW layout is transposed to the graph's NHWC), an ``.npz`` (one array per
    input name) or a folder of such files; ``num_samples`` > 0 keeps the first samples only. Without data the
    pass warns (``UserWarning`` "no calibration data ...") and calibrates on 32 samples uniform in [0, 1] per
    float input (integer inputs: uniform over their type), seed 0. Missing or malformed data is an
    :class:`MccError`. The float graph runs in the reference interpreter on every sample and the range of every
    float activation is recorded: ``method`` ``minmax`` (full range), ``percentile`` (the ``percentile`` and
    ``100 - percentile`` percentiles) or ``mse`` (the shrunk range with the least quantization error).

    Quantization (TFLite's int8 scheme): activations per-tensor asymmetric int8, range widened to include 0;
    conv/depthwise/fc weights per-channel symmetric int8 along the output-channel axis (scale max|w|/127);
    biases int32 with scale input scale x weight scale (made by ``fold-qdq``'s bias rule from the float bias);
    other float constants per-tensor asymmetric int8. Softmax and sigmoid results are (1/256, -128), tanh
    (1/128, 0). Pools, pad, resize and shape ops share their input's quantization; a single-use input of a concat
    takes the concat's; a relu/relu6/clamp after a conv/fc/add/mul/matmul is fused (no quantization between).

    The graph is first written in QDQ form (``q.quantize`` → ``q.dequantize`` after every float activation,
    dequantized integer constants), then ``fold-qdq``'s patterns turn it into integer ops; a float input keeps
    a ``q.quantize`` and a float output a ``q.dequantize``, so the interface stays float. Ops without an integer
    form stay float between dequantize and quantize. Preconditions: constants folded (weights are ``const`` ops).
    Postconditions: integer ops wherever the verifier accepts them. Numerics change by design (int8 rounding).
    A graph without float activations is left unchanged, with no calibration and no warning.
    """

    name = "quantize"
    calibration: str = ""
    method: str = "minmax"
    percentile: float = 99.99
    num_samples: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not 50.0 < self.percentile <= 100.0:
            raise ValueError(f"percentile must lie in (50, 100], got {self.percentile}")
        if self.num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {self.num_samples}")

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        """Calibrate, write the graph in QDQ form, fold it into integer ops."""
        plan = _plan(graph)
        if not plan.activations:
            return False
        quant = self._quantizations(graph, plan)
        rw = Rewriter(graph)
        self._quantize_constants(graph, plan, rw)
        order = {id(op): i for i, op in enumerate(graph.ops)}
        for v in plan.activations:
            if id(v) in plan.fused:
                continue
            q = quant[id(v)]
            anchor = _first_use_anchor(v, order)
            qtype = TensorType(v.type.shape, DType.INT8, q, v.type.layout)
            qname, dqname = (None, None) if v.name is None else (f"{v.name}_q", f"{v.name}_dq")
            if anchor is None:
                if v.producer is None:
                    continue  # an input that is only an output: nothing to compute in int8
                after = graph.index_of(v.producer) + 1
                anchor = graph.ops[after] if after < len(graph.ops) else None
            if anchor is None:  # the last op's result is only a graph output: the rewriter cannot append
                qv = graph.create("q.quantize", [v], [qtype], {}, [qname]).result
                dq = graph.create("q.dequantize", [qv], [v.type], {}, [dqname]).result
                rw.changed = True
            else:
                qv = rw.create("q.quantize", [v], [qtype], {}, [qname], before=anchor).result
                dq = rw.create("q.dequantize", [qv], [v.type], {}, [dqname], before=anchor).result
            for use in [u for u in v.uses if u.op is not qv.producer]:
                rw.set_operand(use.op, use.index, dq)
            if graph.is_output(v):  # the interface stays float and keeps its name; the int8 tensor gets "_i8"
                graph.outputs = [dq if o is v else o for o in graph.outputs]
                dq.name = v.name
                v.name = None if v.name is None else f"{v.name}_i8"
        apply_patterns(graph, PATTERNS)
        return True

    # -- steps ---------------------------------------------------------------------------------------------------
    def _quantizations(self, graph: Graph, plan: _Plan) -> dict[int, QuantParams]:
        """Quantization of every activation (calibrating when some range is needed)."""
        quant: dict[int, QuantParams] = dict(plan.fixed)
        stats: dict[int, _Stats] = {}
        if plan.ranged:
            if self.calibration:
                samples = load_calibration(self.calibration, graph, self.num_samples)
            else:
                warnings.warn("no calibration data given to the quantize pass: calibrating on "
                              f"{SYNTHETIC_SAMPLES} synthetic samples uniform in [0, 1]; int8 accuracy will suffer "
                              "(pass calibration=FILE)", UserWarning, stacklevel=2)
                samples = synthetic_calibration(graph)
                if self.num_samples > 0:
                    samples = samples[:self.num_samples]
            stats = _calibrate(graph, plan.ranged, samples, self.method)
        ranges: dict[int, tuple[float, float]] = {}
        for v in plan.ranged:
            ranges[id(v)] = _choose_range(stats[id(v)], self.method, self.percentile)
            quant[id(v)] = activation_quant(*ranges[id(v)])
        hard_swishes = [op for op in graph.ops if op.kind == "nn.hard_swish"]
        for hs in hard_swishes:  # TFLite's hard-swish needs an input scale of at least 3 / 2^24
            x = hs.operands[0]
            if id(x) in ranges:
                quant[id(x)] = _widened(quant[id(x)], *ranges[id(x)], HARD_SWISH_MIN_INPUT_SCALE)
        for v in plan.activations:
            if id(v) in plan.shared:
                quant[id(v)] = self._source_quant(plan.shared[id(v)], quant)
        for hs in hard_swishes:  # ... and an output scale above s_in / 128
            in_q = quant.get(id(hs.operands[0])) or _int8_dequantized(hs.operands[0])
            if in_q is not None and id(hs.result) in ranges:
                quant[id(hs.result)] = hard_swish_output_quant(in_q, *ranges[id(hs.result)])
        # a concat's single-use inputs with their own range take the concat's quantization instead
        ranged = {id(v) for v in plan.ranged}
        for v in plan.activations:
            op = v.producer
            if op is None or op.kind != "nn.concat":
                continue
            for o in op.operands:
                if id(o) in ranged and len(o.uses) == 1 and not graph.is_output(o):
                    quant[id(o)] = quant[id(v)]
        return quant

    @staticmethod
    def _source_quant(src: Value, quant: dict[int, QuantParams]) -> QuantParams:
        """The quantization a shared-quantization op inherits from its input (see :func:`_shareable`)."""
        got = quant.get(id(src)) or _int8_dequantized(src)
        assert got is not None
        return got

    def _quantize_constants(self, graph: Graph, plan: _Plan, rw: Rewriter) -> None:
        """Float constant operands of the ops being quantized become dequantized int8 constants."""
        act_ids = {id(v) for v in plan.activations}
        for op in list(graph.ops):
            if len(op.results) != 1 or id(op.result) not in act_ids:
                continue
            for i, v in enumerate(op.operands):
                if not v.type.dtype.is_float or id(v) in act_ids or (op.kind in CONV_LIKE and i == 2):
                    continue
                is_weight = op.kind in CONV_LIKE and i == 1
                p = v.producer
                if p is not None and p.kind == "q.dequantize":
                    if not is_weight or _usable_weight(p.operands[0].type, CONV_LIKE[op.kind]):
                        continue
                    arr = _dequantized_constant(v)  # weight-only quantization on another axis: quantize again
                else:
                    arr = constant_array(v)
                if arr is None:
                    continue
                if is_weight:
                    ints, q = weight_quant(arr, CONV_LIKE[op.kind])
                else:
                    q = activation_quant(float(arr.min()) if arr.size else 0.0, float(arr.max()) if arr.size else 0.0)
                    ints = quantize_array(arr, q.scale[0], q.zero_point[0], -128, 127).astype(np.int8)
                src_name = v.name
                c = new_const(rw, ints, TensorType(v.type.shape, DType.INT8, q), src_name, before=op)
                dq = rw.create("q.dequantize", [c], [v.type], {}, [f"{src_name}_dq"], before=op).result
                rw.set_operand(op, i, dq)
                erase_if_dead(rw, v)
