"""Memory planning: schedule search (exact against brute force), placement (never overlapping, at the bound on
chains, optimal on small graphs), the schedule-memory pass, and the figures of the real models.

The oracles here are written independently of ``compiler/memory.py``: alias classes by union-find, lifetimes
from positions in ``graph.ops``, peaks by direct simulation, optimal placements by first-fit over every order.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.interpreter import run
from compiler.ir import DType, Graph, Op, QuantParams, TensorType, Value, const
from compiler.memory import ALIGNMENT, align, apply_schedule, plan_memory, schedule_memory
from compiler.ops.conv import depthwise_in_place
from compiler.passmanager import PassManager, parse_pipeline
from compiler.verifier import verify
from tests.helpers import random_input
from tests.models import model_path
from tests.strategies import random_graphs

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
Q = QuantParams.per_tensor(0.1, 0)
ALIASES = ("nn.reshape", "nn.flatten", "nn.identity")


def t8(shape: tuple[int, ...]) -> TensorType:
    return TensorType(shape, DType.INT8, Q)


# -- graph builders ----------------------------------------------------------------------------------------------
class _Build:
    def __init__(self, g: Graph, draw, rng: np.random.Generator) -> None:
        self.g, self.draw, self.rng, self.k = g, draw, rng, 0

    def name(self) -> str:
        self.k += 1
        return f"v{self.k}"

    def op(self, kind: str, operands: list[Value], t: TensorType, **attrs) -> Value:
        return self.g.create(kind, operands, [t], attrs, [self.name()]).result

    def unary(self, x: Value) -> Value:
        _, h, w, c = x.type.shape
        kind = self.draw(st.sampled_from(["relu", "pad", "pool", "conv", "alias"]))
        if kind == "pad":
            p = self.draw(st.integers(1, 2))
            return self.op("nn.pad", [x], t8((1, h + 2 * p, w + 2 * p, c)), pads=(0, p, p, 0, 0, p, p, 0))
        if kind == "pool" and h >= 2 and w >= 2:
            return self.op("nn.max_pool2d", [x], t8((1, h // 2, w // 2, c)), kernel=(2, 2), strides=(2, 2))
        if kind == "conv":
            co = self.draw(st.integers(1, 8))
            wt = const(self.g, self.rng.integers(-127, 128, (co, 1, 1, c)).astype(np.int8),
                       TensorType((co, 1, 1, c), DType.INT8, QuantParams.per_tensor(0.01, 0)), self.name())
            return self.op("nn.conv2d", [x, wt], t8((1, h, w, co)))
        if kind == "alias":
            flat = self.op("nn.flatten", [x], t8((1, h * w * c)), axis=1)
            return self.op("nn.reshape", [flat], x.type, shape=x.type.shape)
        return self.op("nn.relu", [x], x.type)


@st.composite
def branched_graphs(draw, max_steps: int = 9) -> Graph:
    """Random DAGs of int8 NHWC ops that grow, shrink, join (add, concat) and alias their tensors."""
    g = Graph("branched")
    b = _Build(g, draw, np.random.default_rng(draw(st.integers(0, 2**31 - 1))))
    h, c = draw(st.integers(2, 6)), draw(st.integers(1, 4))
    vals = [g.add_input(t8((1, h, h, c)), f"x{i}") for i in range(draw(st.integers(1, 2)))]
    for _ in range(draw(st.integers(1, max_steps))):
        x = draw(st.sampled_from(vals))
        join = draw(st.sampled_from(["none", "none", "add", "concat"]))
        if join == "add":
            y = draw(st.sampled_from([v for v in vals if v.type.shape == x.type.shape]))
            vals.append(b.op("nn.add", [x, y], x.type))
        elif join == "concat":
            y = draw(st.sampled_from([v for v in vals if v.type.shape[:3] == x.type.shape[:3]]))
            vals.append(b.op("nn.concat", [x, y], t8((*x.type.shape[:3], x.type.shape[3] + y.type.shape[3])),
                             axis=3))
        else:
            vals.append(b.unary(x))
    outs = [vals[-1]]
    extra = draw(st.sampled_from(vals))
    if extra is not vals[-1]:
        outs.append(extra)
    g.outputs = outs
    verify(g)
    return g


@st.composite
def chains(draw) -> Graph:
    """input -> op -> op -> ... -> output, every op using only the previous result."""
    g = Graph("chain")
    b = _Build(g, draw, np.random.default_rng(draw(st.integers(0, 2**31 - 1))))
    x = g.add_input(t8((1, draw(st.integers(2, 8)), draw(st.integers(2, 8)), draw(st.integers(1, 8)))), "x")
    for _ in range(draw(st.integers(1, 12))):
        x = b.unary(x)
    g.outputs = [x]
    verify(g)
    return g


def two_branch_graph() -> Graph:
    """x feeds two expand (1 -> 4 channels) then shrink (4 -> 1) branches, written breadth-first, then an add."""
    g = Graph("two_branch")
    x = g.add_input(TensorType((1, 4, 4, 1), DType.FLOAT32), "x")
    f = TensorType((1, 4, 4, 4), DType.FLOAT32)
    ws = [const(g, np.full(shape, 0.5, np.float32)) for shape in [(4, 1, 1, 1)] * 2 + [(1, 1, 1, 4)] * 2]
    e1 = g.create("nn.conv2d", [x, ws[0]], [f], {}, ["e1"]).result
    e2 = g.create("nn.conv2d", [x, ws[1]], [f], {}, ["e2"]).result
    s1 = g.create("nn.conv2d", [e1, ws[2]], [x.type], {}, ["s1"]).result
    s2 = g.create("nn.conv2d", [e2, ws[3]], [x.type], {}, ["s2"]).result
    g.outputs = [g.create("nn.add", [s1, s2], [x.type], {}, ["y"]).result]
    return g


# -- independent oracles -----------------------------------------------------------------------------------------
def alias_classes(graph: Graph) -> dict[Value, Value]:
    """Union-find over alias ops whose operand is an activation: value -> class representative."""
    parent: dict[Value, Value] = {}

    def find(v: Value) -> Value:
        while parent.get(v, v) is not v:
            v = parent[v]
        return v

    acts = list(graph.inputs) + [r for op in graph.ops if op.kind != "const" for r in op.results]
    for op in graph.ops:
        src = op.operands[0] if op.operands else None
        if op.kind in ALIASES and src is not None and (src.producer is None or src.producer.kind != "const"):
            parent[find(op.result)] = find(src)
    return {v: find(v) for v in acts}


def class_spans(graph: Graph) -> dict[Value, tuple[int, int, int]]:
    """Class representative -> (aligned size, first op position, last op position) in ``graph.ops``."""
    pos = {op: i for i, op in enumerate(graph.ops)}
    spans: dict[Value, list[int]] = {}
    for v, rep in alias_classes(graph).items():
        born = -1 if v.producer is None else pos[v.producer]
        last = max([born] + [pos[u.op] for u in v.uses] + ([len(graph.ops)] if graph.is_output(v) else []))
        s = spans.setdefault(rep, [align(rep.type.nbytes), born, last])
        s[1], s[2] = min(s[1], born), max(s[2], last)
    return {rep: (s[0], s[1], s[2]) for rep, s in spans.items()}


def scratch_of(op: Op) -> int:
    """Kernel scratch bytes (aligned): the in-place depthwise kernel copies one H x W input channel at a time;
    the GEMM conv kernel expands every output pixel's window into an int16 column (taps rounded up to 4) or,
    with byte_column, gathers a window that is not an in-place 1x1 pixel as int8 bytes; the general int8 conv
    kernel a window of more than one tap as int16 values."""
    from compiler.ops.conv import gemm_conv, gemm_conv_direct

    if op.kind == "nn.depthwise_conv2d" and depthwise_in_place(op):
        _, h, w, _ = op.operands[0].type.shape
        return align(h * w)
    if op.kind != "nn.conv2d" or op.operands[0].type.dtype is not DType.INT8:
        return 0
    _, kh, kw, cg = op.operands[1].type.shape
    if gemm_conv(op):
        if op.attrs.get("byte_column"):  # raw bytes: a 1x1 pixel in place, else an int8 column
            return 0 if gemm_conv_direct(op) else align((kh * kw * cg + 3) // 4 * 4)
        return align(2 * ((kh * kw * cg + 3) // 4 * 4))
    return align(2 * kh * kw * cg) if kh * kw > 1 else 0


def simulated_peak(graph: Graph) -> int:
    """Most aligned bytes live at any moment from before the first op to after the last, by direct counting
    (kernel scratch included while its op runs)."""
    spans = class_spans(graph)
    scratch = [0] + [scratch_of(op) for op in graph.ops] + [0]
    return max((sum(size for size, lo, hi in spans.values() if lo <= t <= hi) + scratch[t + 1]
                for t in range(-1, len(graph.ops) + 1)), default=0)


def check_plan(graph: Graph) -> None:
    """The plan of ``graph`` without overlaps puts every activation inside the arena, aligned, with alias classes
    sharing offsets, and no two classes live at the same moment share a byte."""
    plan = plan_memory(graph, overlap=False)
    classes = alias_classes(graph)
    for v, rep in classes.items():
        assert plan.offset(v) == plan.offset(rep), f"%{v.name} is not at its alias' offset"
        assert plan.offset(v) % ALIGNMENT == 0
        assert plan.offset(v) >= 0 and plan.offset(v) + v.type.nbytes <= plan.arena_bytes
    spans = class_spans(graph)
    reps = list(spans)
    for a, b in itertools.combinations(reps, 2):
        (_, alo, ahi), (_, blo, bhi) = spans[a], spans[b]
        if alo <= bhi and blo <= ahi:  # live together at some moment
            oa, ob = plan.offset(a), plan.offset(b)
            assert oa + a.type.nbytes <= ob or ob + b.type.nbytes <= oa, f"%{a.name} and %{b.name} overlap"
    pos = {op: i for i, op in enumerate(graph.ops)}
    for op, off in plan.scratch.items():
        assert scratch_of(op) > 0 and off % ALIGNMENT == 0 and off + scratch_of(op) <= plan.arena_bytes
        for rep, (size, lo, hi) in spans.items():
            if lo <= pos[op] <= hi:
                assert off + scratch_of(op) <= plan.offset(rep) or plan.offset(rep) + size <= off
    assert sum(scratch_of(op) > 0 for op in graph.ops) == len(plan.scratch)
    peak = simulated_peak(graph)
    assert plan.lower_bound == peak
    assert max(plan.live_bytes, default=0) <= plan.lower_bound <= plan.arena_bytes
    assert plan.gap_bytes == plan.arena_bytes - plan.lower_bound >= 0


def topological_orders(graph: Graph):
    ops = [op for op in graph.ops if op.kind != "const"]
    deps = {op: {v.producer for v in op.operands if v.producer is not None and v.producer.kind != "const"}
            for op in ops}

    def rec(done: list[Op], left: list[Op]):
        if not left:
            yield list(done)
            return
        for op in left:
            if deps[op] <= set(done):
                done.append(op)
                yield from rec(done, [o for o in left if o is not op])
                done.pop()

    yield from rec([], ops)


def assert_topological(graph: Graph) -> None:
    pos = {op: i for i, op in enumerate(graph.ops)}
    for op in graph.ops:
        for v in op.operands:
            assert v.producer is None or pos[v.producer] < pos[op]
    verify(graph)


def assert_same_results(a: Graph, b: Graph, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(2):
        x = [random_input(v, rng) for v in a.inputs]
        for p, q in zip(run(a, x), run(b, x), strict=True):
            np.testing.assert_array_equal(p, q)


# -- placement ---------------------------------------------------------------------------------------------------
@SETTINGS
@given(graph=branched_graphs())
def test_plan_never_overlaps_live_buffers(graph):
    check_plan(graph)


@SETTINGS
@given(graph=random_graphs(quantized=True))
def test_plan_never_overlaps_live_buffers_on_pass_test_graphs(graph):
    check_plan(graph)


@SETTINGS
@given(graph=chains())
def test_linear_chain_arena_equals_the_lower_bound(graph):
    plan = plan_memory(graph, overlap=False)
    check_plan(graph)
    assert plan.arena_bytes == plan.lower_bound == max(plan.live_bytes)
    assert plan.gap_bytes == 0


def test_chain_where_greedy_by_size_misses_the_bound():
    """Sizes 10 -> 100 -> 50 -> 100 -> 10 style chain: largest-first leaves a hole; the planner must not."""
    g = Graph("zigzag")
    x = g.add_input(t8((1, 4, 4, 1)), "x")
    chans = [8, 2, 6, 3, 8, 1]
    for i, c in enumerate(chans):
        w = const(g, np.ones((c, 1, 1, x.type.shape[3]), np.int8),
                  TensorType((c, 1, 1, x.type.shape[3]), DType.INT8, QuantParams.per_tensor(0.01, 0)))
        x = g.create("nn.conv2d", [x, w], [t8((1, 4, 4, c))], {}, [f"c{i}"]).result
    g.outputs = [x]
    plan = plan_memory(g, overlap=False)
    # each layer: input, result and the GEMM kernel's int16 column of its input depth rounded up to 4
    assert plan.arena_bytes == plan.lower_bound == max(16 * (a + b) + align(2 * ((a + 3) // 4 * 4))
                                                       for a, b in itertools.pairwise([1, *chans]))


def _first_fit_optimum(graph: Graph) -> int:
    spans: dict[object, tuple[int, int, int]] = dict(class_spans(graph))
    for t, op in enumerate(graph.ops):  # a kernel's scratch lives while its op runs
        if op.kind != "const" and scratch_of(op):
            spans[op] = (scratch_of(op), t, t)
    reps = list(spans)
    best = None
    for order in itertools.permutations(reps):
        off: dict[object, int] = {}
        top = 0
        for r in order:
            size, lo, hi = spans[r]
            busy = sorted((off[o], off[o] + spans[o][0]) for o in off if spans[o][1] <= hi and lo <= spans[o][2])
            at = 0
            for a, b in busy:
                if at + size <= a:
                    break
                at = max(at, b)
            off[r] = at
            top = max(top, at + size)
        best = top if best is None else min(best, top)
    return best or 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=branched_graphs(max_steps=5))
def test_small_graphs_get_an_optimal_placement(graph):
    if len(class_spans(graph)) + sum(op.kind != "const" and scratch_of(op) > 0 for op in graph.ops) > 7:
        return
    assert plan_memory(graph, overlap=False).arena_bytes == _first_fit_optimum(graph)


# -- operator order ----------------------------------------------------------------------------------------------
def test_exact_search_finds_the_known_optimum_of_two_branches():
    g = two_branch_graph()
    s = schedule_memory(g, overlap=False)
    assert (s.original_peak, s.peak, s.exact) == (576, 384, True)  # 64 B input, 256 B expanded, 64 B shrunk
    assert [op.results[0].name for op in s.order] in (["e1", "s1", "e2", "s2", "y"], ["e2", "s2", "e1", "s1", "y"])
    reference = g.clone()
    apply_schedule(g, s.order)
    assert_topological(g)
    assert plan_memory(g, overlap=False).lower_bound == simulated_peak(g) == 384
    assert plan_memory(g, overlap=False).arena_bytes < plan_memory(reference, overlap=False).arena_bytes
    assert_same_results(g, reference)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=branched_graphs(max_steps=6))
def test_exact_search_matches_brute_force_over_all_orders(graph):
    if sum(op.kind != "const" for op in graph.ops) > 7:
        return
    s = schedule_memory(graph, overlap=False)
    assert s.exact
    assert s.original_peak == simulated_peak(graph)
    best = None
    for order in topological_orders(graph):
        h = graph.clone()
        apply_schedule(h, [h.ops[graph.ops.index(op)] for op in order])
        p = simulated_peak(h)
        best = p if best is None else min(best, p)
    assert s.peak == best


@SETTINGS
@given(graph=branched_graphs(), seed=st.integers(0, 1000))
def test_schedule_memory_pass_keeps_a_valid_order_and_the_results(graph, seed):
    reference = graph.clone()
    before = simulated_peak(graph)
    changed = PassManager(parse_pipeline("schedule-memory{overlap=false}")).run(graph)
    assert_topological(graph)
    assert sorted(op.results[0].name for op in graph.ops) == sorted(op.results[0].name for op in reference.ops)
    assert_same_results(graph, reference, seed)
    after = simulated_peak(graph)
    assert after < before if changed else after == before
    assert not PassManager(parse_pipeline("schedule-memory{overlap=false}")).run(graph)  # idempotent
    check_plan(graph)


def _wide_graph(branches: int) -> Graph:
    g = Graph("wide")
    x = g.add_input(t8((1, 4, 4, 1)), "x")
    outs = []
    for i in range(branches):
        big = g.create("nn.pad", [x], [t8((1, 4 + 2 * (i + 1), 4 + 2 * (i + 1), 1))],
                       {"pads": (0, i + 1, i + 1, 0, 0, i + 1, i + 1, 0)}, [f"big{i}"]).result
        k = 2 * (i + 1) + 1
        outs.append(g.create("nn.max_pool2d", [big], [t8((1, 4, 4, 1))], {"kernel": (k, k)}, [f"small{i}"]).result)
    acc = outs[0]
    for i, o in enumerate(outs[1:]):
        acc = g.create("nn.concat", [acc, o], [t8((1, 4, 4, i + 2))], {"axis": 3}, [f"cat{i}"]).result
    g.outputs = [acc]
    verify(g)
    return g


def test_beam_search_beyond_the_state_budget_still_gives_a_valid_better_order():
    g = _wide_graph(7)
    exact = schedule_memory(g, overlap=False)
    beam = schedule_memory(g, max_states=1, overlap=False)
    assert exact.exact and not beam.exact
    assert exact.peak <= beam.peak <= beam.original_peak == exact.original_peak
    reference = g.clone()
    apply_schedule(g, beam.order)
    assert_topological(g)
    assert simulated_peak(g) == beam.peak
    assert_same_results(g, reference)


def test_schedule_of_a_graph_without_ops():
    g = Graph("empty")
    x = g.add_input(t8((1, 3)), "x")
    g.outputs = [x]
    s = schedule_memory(g)
    assert s.order == () and s.peak == s.original_peak == 8
    plan = plan_memory(g)
    assert plan.arena_bytes == plan.lower_bound == 8 and plan.live_bytes == ()


# -- real models -------------------------------------------------------------------------------------------------
REAL = ["mlperf_tiny_ad01", "mlperf_tiny_ic_resnet8", "mlperf_tiny_kws_ref_model", "mlperf_tiny_vww_96"]


@pytest.mark.parametrize("stem", REAL)
def test_real_models_plan_at_the_lower_bound(stem):
    from compiler.driver import prepare_model

    graph = prepare_model(model_path(f"derived_onnx/{stem}_int8.qdq.onnx"), opt_level=3).graph
    before = plan_memory(graph, overlap=False)
    assert before.gap_bytes == 0
    PassManager(parse_pipeline("schedule-memory{overlap=false}")).run(graph)
    after = plan_memory(graph, overlap=False)
    assert after.arena_bytes <= before.arena_bytes and after.gap_bytes == 0
    shared = plan_memory(graph)
    assert shared.lower_bound <= shared.arena_bytes <= after.arena_bytes
