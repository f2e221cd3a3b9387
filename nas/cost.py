"""The cost model is the compiler: peak SRAM, flash, MACs and an instruction estimate, by running mcc itself.

:func:`cost` takes an :class:`~nas.space.Arch`, an in-memory int8 :class:`~compiler.ir.Graph` or a model file and
runs exactly what ``mcc MODEL -O LEVEL --target T`` runs before writing C:

* an ``Arch`` becomes the int8 graph of :func:`nas.build.to_graph`; a graph (or that one) goes through
  :func:`compiler.driver.prepare_graph` (the lowering pipeline for an integer graph, then ``-O LEVEL`` with the
  same patch options), then :func:`compiler.driver.plan_and_lower` (``plan-memory`` and the C lowering). Peak SRAM
  is the planned arena and flash the lowered weights and tables, the two figures ``compile_graph`` writes to
  ``report.json``. The same graph printed as ``.mir`` and compiled with ``mcc`` gives the same report, to the
  byte (``tests/nas/test_cost_exact.py`` checks 50 random subnets).
* a model file (``.onnx``, ``.mir``, ``.tflite``) goes through :func:`compiler.driver.prepare_model`, as ``mcc``
  and ``mcc analyze`` do.

The only difference from ``mcc`` is that the verifier does not run between passes (``verify=True`` turns it
back on): it only reads the graph, so the figures are the same.

:class:`CostModel` keeps the caches a search wants: :meth:`CostModel.cost` is :func:`cost` memoised by architecture
(exact), :meth:`CostModel.estimate` a fast approximation from memoised compilations of the network's pieces (stem,
blocks, head), for screening; what a search accepts must be confirmed with the exact cost. The latency estimate is
:mod:`nas.latency`'s model, fitted to emulated Cortex-M7 runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compiler.analysis import op_macs
from compiler.driver import CODE_RESERVE_BYTES, plan_and_lower, prepare_graph, prepare_model
from compiler.ir import Graph, Op
from compiler.memory import IN_PLACE_TRIALS, attach_plan, plan_memory
from compiler.pipelines import PatchOptions
from compiler.targets import get_target
from nas.build import to_graph
from nas.latency import DEFAULT_LATENCY, LATENCY_FILE, LatencyModel, latency_model
from nas.space import Arch

__all__ = ["DEFAULT_LATENCY", "LATENCY_FILE", "Cost", "CostModel", "Estimate", "LatencyModel", "cost", "cost_many",
           "estimate", "estimate_many", "evaluations_per_second", "latency_model"]


@dataclass(frozen=True)
class Cost:
    """What one network costs on one target at one optimisation level, as ``mcc``'s ``report.json`` says."""

    peak_sram_bytes: int
    flash_bytes: int
    macs: int
    latency_instructions: float
    """Estimated instructions of one inference (:class:`LatencyModel`)."""
    patch_stage: dict[str, Any] | None = field(default=None, compare=False)
    """What ``patch-stage`` decided, when it ran (as ``report.json``'s ``patch_stage``)."""

    def fits(self, sram: int, flash: int) -> bool:
        """True when both figures are within the budgets."""
        return self.peak_sram_bytes <= sram and self.flash_bytes <= flash


def cost(model: Arch | Graph | Path | str, target: str = "cortex-m7", opt_level: int = 3,
         patch: PatchOptions | None = None, *, seed: int = 0, verify: bool = False,
         calibration: str | None = None, latency: LatencyModel | None = None) -> Cost:
    """Peak SRAM, flash, MACs and estimated instructions of ``model`` compiled by mcc at ``-O opt_level`` for
    ``target``. A :class:`Graph` is changed in place (pass a clone to keep it); an :class:`Arch` is built with
    :func:`nas.build.to_graph` (``seed`` sets its quantization scales). A float model file needs the
    ``calibration`` data it will be compiled with: flash depends on it (equal requantization tables are shared)."""
    tgt = get_target(target)
    if isinstance(model, Arch):
        model = to_graph(model, seed)
    if isinstance(model, Graph):
        graph = model
        _, notes = prepare_graph(graph, opt_level=opt_level, target=tgt.name, patch=patch, verify_each=verify)
    else:
        prepared = prepare_model(Path(model), opt_level=opt_level, target=tgt.name, calibration=calibration,
                                 patch=patch)
        graph, notes = prepared.graph, prepared.notes
    plan, program, _ = plan_and_lower(graph, "model", verify_each=verify, flash_bytes=tgt.flash_bytes)
    flash = sum(a.array.nbytes for a in program.weights) + sum(a.array.nbytes for a in program.tables)
    macs = sum(op_macs(op) for op in graph.ops)
    lat = (latency or latency_model()).estimate(graph)
    return Cost(plan.arena_bytes, flash, macs, lat, notes.get("patch_stage"))


def _cost_job(job: tuple[str, str, int, PatchOptions | None]) -> Cost:
    arch_json, target, opt_level, patch = job
    return cost(Arch.from_json(arch_json), target, opt_level, patch)


def cost_many(archs: Sequence[Arch], target: str = "cortex-m7", opt_level: int = 3,
              patch: PatchOptions | None = None, *, jobs: int = 1) -> list[Cost]:
    """:func:`cost` of every architecture, in order; ``jobs > 1`` spreads them over that many local processes."""
    work = [(a.to_json(), target, opt_level, patch) for a in archs]
    if jobs <= 1 or len(work) < 2:
        return [_cost_job(w) for w in work]
    import multiprocessing as mp

    with mp.get_context("fork").Pool(jobs) as pool:
        return pool.map(_cost_job, work, chunksize=max(1, len(work) // (4 * jobs)))


def evaluations_per_second(archs: Iterable[Arch], **kw: Any) -> float:
    """Wall-clock rate of :func:`cost_many` over ``archs``."""
    import time

    items = list(archs)
    start = time.perf_counter()
    cost_many(items, **kw)
    return len(items) / (time.perf_counter() - start)


# -- the fast surrogate ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    """What :func:`estimate` predicts for a network compiled for per-layer inference (``-O2``, ``-O3 --patches 1``):
    peak SRAM and flash (approximate), MACs (exact) and the latency model's instructions. Not a compilation: confirm
    any network a search accepts with :func:`cost`. ``-O3``'s automatic patch-based inference usually lowers the
    peak far below this estimate (and changes the MACs); the estimate does not model it."""

    peak_sram_bytes: int
    flash_bytes: int
    macs: int
    latency_instructions: float
    sram_lower_bound: int
    """The most bytes any one op of any piece needs live, with the in-place kernel wherever it helps: per-layer, the
    whole network's ops need the same live bytes, so its arena is not smaller (an argument, not a proof: it held on
    every subnet measured, see docs/nas.md)."""
    exact: bool = field(default=False, init=False)
    """Always False: these are estimates (see :class:`Cost` for compiled figures)."""

    def fits(self, sram: int, flash: int) -> bool:
        """True when both estimated figures are within the budgets."""
        return self.peak_sram_bytes <= sram and self.flash_bytes <= flash


@dataclass(frozen=True)
class _Variant:
    """Compiled figures of one piece of a network (stem, a block, the head) compiled alone, with its depthwise op
    (if any) on the raster or the in-place kernel."""

    arena: int
    lower_bound: int
    need: int
    """Live bytes at its depthwise op (0 without one)."""
    flash_wide: int
    flash_narrow: int
    instructions: float


@dataclass(frozen=True)
class _Unit:
    raster: _Variant
    in_place: _Variant | None
    """None when the in-place kernel is not a candidate (``depthwise_in_place_pays``)."""
    macs: int


_UnitKey = tuple[Any, ...]


def _units(arch: Arch) -> list[_UnitKey]:
    """The network as a chain of independently compiled pieces: (kind, input shape, shape parameters)."""
    h = arch.resolution
    keys: list[_UnitKey] = [("stem", arch.in_channels, h, arch.channels(arch.stem_width), arch.stem_stride)]
    h = (h - 1) // arch.stem_stride + 1  # 3x3, padding 1
    for b in arch.blocks():
        keys.append(("block", b.c_in, h, b.mid, b.c_out, b.kernel, b.stride, b.se, b.hswish))
        h = (h + 2 * (b.kernel // 2) - b.kernel) // b.stride + 1
    keys.append(("head", arch.last_channels, h, arch.head_channels, arch.num_classes))
    return keys


def _unit_graph(key: _UnitKey) -> Graph:
    """The graph of one piece: its input as the graph input, its output as the graph output."""
    from nas import build
    from nas.space import MBConv

    kind = key[0]
    dummy = Arch(3, 2, 8, 1.0, 8, 1, 8, 8, ())
    bld = build._Builder(dummy, 0)
    if kind == "stem":
        _, c_in, h, c_out, stride = key
        x = bld.g.add_input(build._q8((1, h, h, c_in), (1.0 / 255.0, -128)), "image")
        y = bld.activate(x, c_out, 3, stride, "stem", False)
    elif kind == "block":
        _, c_in, h, mid, c_out, k, stride, se, hswish = key
        x = bld.g.add_input(build._q8((1, h, h, c_in), build.LINEAR_Q), "x")
        y = bld.block(x, MBConv("b", c_in, mid, c_out, k, stride, se, hswish))
    else:
        _, c_in, h, head, classes = key
        x = bld.g.add_input(build._q8((1, h, h, c_in), build.LINEAR_Q), "x")
        y = bld.activate(x, head, 1, 1, "head", False)
        from compiler.ir import DType, QuantParams, TensorType, const

        pooled = bld.g.create("nn.mean", [y], [build._q8((1, head), build.RELU6_Q)],
                              {"axes": (1, 2), "keepdims": False}, ["pool"]).result
        wq = QuantParams.per_channel(bld.scales(classes), [0] * classes, 0)
        wv = const(bld.g, build._weights((classes, head), "int8", "fc"), TensorType((classes, head), DType.INT8, wq),
                   "fc_w")
        bv = const(bld.g, build._weights((classes,), "int32", "fc"), TensorType((classes,), DType.INT32), "fc_b")
        y = bld.g.create("nn.fully_connected", [pooled, wv, bv], [build._q8((1, classes), (0.1, 0))], {},
                         ["logits"]).result
    bld.g.outputs = [y]
    return bld.g


class CostModel:
    """The NAS cost model with its caches: :meth:`cost` compiles (exact, memoised by architecture), :meth:`estimate`
    predicts from memoised pieces (fast, approximate).

    :meth:`estimate` compiles each distinct piece of a network — the stem, every inverted-residual block (by its
    channels, input size, kernel, stride, SE and activation) and the head — once, alone, with the same passes at
    ``-O2`` (per-layer inference), and combines them: peak SRAM is the largest piece's arena (the pieces of a chain
    share no buffer but the one between them), flash the sum of the pieces' constants (with the narrow GEMM layout
    when the 16-bit one would leave less than :data:`~compiler.driver.CODE_RESERVE_BYTES` of the target's flash, as
    ``mcc`` does), MACs and instructions the sums. MACs are exact; peak SRAM and flash are estimates because the
    whole network's placement can fragment the arena and the in-place choice is made on the pieces' arenas (see
    docs/nas.md for the measured errors). The estimate models per-layer inference whatever ``opt_level``: ``-O3``'s
    patch-based inference is not estimated. A search screens with :meth:`estimate` and must confirm what it accepts
    with :meth:`cost` (the exact figures, at ``opt_level`` with ``patch``).
    """

    def __init__(self, target: str = "cortex-m7", opt_level: int = 3, patch: PatchOptions | None = None,
                 latency: LatencyModel | None = None) -> None:
        self.target = get_target(target).name
        self.flash_bytes = get_target(target).flash_bytes
        self.opt_level = opt_level
        self.patch = patch
        self.latency = latency or latency_model()
        self._exact: dict[str, Cost] = {}
        self._pieces: dict[_UnitKey, _Unit] = {}
        self.exact_hits = 0
        self.exact_misses = 0

    def cost(self, arch: Arch) -> Cost:
        """:func:`cost` of ``arch`` (exact: the figures ``mcc`` reports), computed once per architecture."""
        key = arch.to_json()
        hit = self._exact.get(key)
        if hit is not None:
            self.exact_hits += 1
            return hit
        self.exact_misses += 1
        c = cost(arch, self.target, self.opt_level, self.patch, latency=self.latency)
        self._exact[key] = c
        return c

    def _variant(self, g: Graph, dw: Op | None) -> _Variant:
        plan = plan_memory(g)
        attach_plan(g, plan)
        _, program, _ = plan_and_lower(g, "model", verify_each=False)
        wide = sum(a.array.nbytes for a in (*program.weights, *program.tables))
        program.use_narrow_gemm()
        narrow = sum(a.array.nbytes for a in (*program.weights, *program.tables))
        need = plan.live_bytes[g.ops.index(dw)] if dw is not None else 0
        return _Variant(plan.arena_bytes, plan.lower_bound, need, wide, narrow, self.latency.estimate(g))

    def _piece(self, key: _UnitKey) -> _Unit:
        u = self._pieces.get(key)
        if u is None:
            from compiler.ops.conv import depthwise_in_place_pays

            g = _unit_graph(key)
            prepare_graph(g, opt_level=2, target=self.target, verify_each=False)
            dw = next((op for op in g.ops if op.kind == "nn.depthwise_conv2d"), None)
            raster = self._variant(g, dw)
            in_place = None
            if dw is not None and depthwise_in_place_pays(dw):
                dw.attrs["in_place"] = True
                in_place = self._variant(g, dw)
            u = _Unit(raster, in_place, sum(op_macs(op) for op in g.ops))
            self._pieces[key] = u
        return u

    def estimate(self, arch: Arch) -> Estimate:
        """Estimated peak SRAM and flash, exact MACs and estimated instructions of ``arch`` from memoised pieces.

        Which depthwise ops use the in-place kernel is decided as :func:`compiler.memory.plan_choosing_in_place`
        decides it, with each piece's arena standing in for the whole network's."""
        arch.validate()
        units = [self._piece(k) for k in _units(arch)]
        on = [u.in_place is not None for u in units]

        def arena(state: Sequence[bool]) -> int:
            return max((u.in_place.arena if s and u.in_place else u.raster.arena)
                       for u, s in zip(units, state, strict=True))

        base = arena([False] * len(units))
        best = arena(on) if any(on) else base
        if best >= base:
            on = [False] * len(units)
            best = base
        else:
            far = [i for i, u in enumerate(units) if on[i] and u.raster.need * 100 < best * 95]
            if far:
                trial_state = [s and i not in far for i, s in enumerate(on)]
                trial = arena(trial_state)
                if trial <= best:
                    on, best = trial_state, trial
            near = sorted((i for i, s in enumerate(on) if s), key=lambda i: units[i].raster.need)
            for i in near[:IN_PLACE_TRIALS]:
                trial_state = list(on)
                trial_state[i] = False
                trial = arena(trial_state)
                if trial <= best:
                    on, best = trial_state, trial
        chosen = [u.in_place if s and u.in_place else u.raster for u, s in zip(units, on, strict=True)]
        flash = sum(v.flash_wide for v in chosen)
        if flash + CODE_RESERVE_BYTES > self.flash_bytes:
            flash = sum(v.flash_narrow for v in chosen)
        bound = max(min(u.raster.lower_bound, u.in_place.lower_bound if u.in_place else u.raster.lower_bound)
                    for u in units)
        return Estimate(best, flash, sum(u.macs for u in units), sum(v.instructions for v in chosen), bound)

    @property
    def pieces(self) -> int:
        """Distinct pieces compiled so far."""
        return len(self._pieces)


def estimate(arch: Arch, target: str = "cortex-m7") -> Estimate:
    """:meth:`CostModel.estimate` with a fresh model (use one :class:`CostModel` across a search: it caches)."""
    return CostModel(target).estimate(arch)


_WORKER: CostModel | None = None


def _estimate_job(archs: list[str]) -> list[Estimate]:
    assert _WORKER is not None
    return [_WORKER.estimate(Arch.from_json(a)) for a in archs]


def estimate_many(model: CostModel, archs: Sequence[Arch], *, jobs: int = 1) -> list[Estimate]:
    """:meth:`CostModel.estimate` of every architecture, in order; ``jobs > 1`` splits them over that many forked
    processes, each starting with ``model``'s pieces (pieces they compile anew are not sent back)."""
    if jobs <= 1 or len(archs) < 2:
        return [model.estimate(a) for a in archs]
    import multiprocessing as mp

    global _WORKER
    _WORKER = model
    texts = [a.to_json() for a in archs]
    size = -(-len(texts) // jobs)
    try:
        with mp.get_context("fork").Pool(jobs) as pool:
            parts = pool.map(_estimate_job, [texts[i:i + size] for i in range(0, len(texts), size)])
    finally:
        _WORKER = None
    return [e for part in parts for e in part]
