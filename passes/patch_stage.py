"""``patch-stage``: run a network's first layers tile by tile (MCUNetV2 patch-based inference), chosen automatically.

The first layers of a CNN work on the largest feature maps and set the peak SRAM. Computed per output tile, the
stage needs only one tile's worth of each intermediate map at a time (plus the full input and the full stage
output), at the cost of recomputing the halo the tiles' receptive fields share.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from compiler.analysis import total_macs
from compiler.errors import PassError
from compiler.ir import AttrValue, Graph, Op, Value
from compiler.memory import live_bytes, plan_choosing_in_place
from compiler.opdef import attr
from compiler.passmanager import Pass, PassContext

WINDOW_KINDS = frozenset({"nn.conv2d", "nn.depthwise_conv2d", "nn.avg_pool2d", "nn.max_pool2d"})
POINTWISE_KINDS = frozenset({"nn.add", "nn.mul", "q.requantize", "nn.relu", "nn.relu6", "nn.clamp",
                             "nn.leaky_relu", "nn.hard_swish", "nn.hard_sigmoid", "nn.sigmoid", "nn.tanh"})
MAX_PATCHES = 8
PLANNED_CANDIDATES = 4
"""Candidates (best lower bound first) that get a full memory plan during the automatic choice."""


@dataclass(frozen=True)
class Region:
    """Rows [y0, y1) and columns [x0, x1) of an NHWC feature map."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def h(self) -> int:
        """Rows."""
        return self.y1 - self.y0

    @property
    def w(self) -> int:
        """Columns."""
        return self.x1 - self.x0

    def union(self, other: Region | None) -> Region:
        """The smallest region holding both."""
        if other is None:
            return self
        return Region(min(self.y0, other.y0), max(self.y1, other.y1), min(self.x0, other.x0),
                      max(self.x1, other.x1))


def _geometry(op: Op) -> tuple[int, int, int, int, int, int, int, int]:
    """(kh, kw, sh, sw, dh, dw, pad_top, pad_left) of a windowed op."""
    if op.kind in ("nn.avg_pool2d", "nn.max_pool2d"):
        kh, kw = attr(op, "kernel")
        dh = dw = 1
    else:
        kh, kw = op.operands[1].type.shape[1:3]
        dh, dw = attr(op, "dilations")
    sh, sw = attr(op, "strides")
    pads = attr(op, "pads")
    return kh, kw, sh, sw, dh, dw, pads[0], pads[1]


def _span(a: int, b: int, k: int, s: int, d: int, pad: int) -> tuple[int, int]:
    """Unclamped input rows [u0, u1) that output rows [a, b) of a window (kernel k, stride s, dilation d) read."""
    return a * s - pad, (b - 1) * s - pad + (k - 1) * d + 1


def input_region(op: Op, out: Region) -> Region:
    """The region of ``op``'s data operand that result region ``out`` reads (padding excluded)."""
    if op.kind not in WINDOW_KINDS:
        return out
    kh, kw, sh, sw, dh, dw, pt, pl = _geometry(op)
    _, ih, iw, _ = op.operands[0].type.shape
    y0, y1 = _span(out.y0, out.y1, kh, sh, dh, pt)
    x0, x1 = _span(out.x0, out.x1, kw, sw, dw, pl)
    return Region(max(0, y0), min(ih, y1), max(0, x0), min(iw, x1))


def local_pads(op: Op, out: Region) -> tuple[int, int, int, int]:
    """Padding of the per-tile op: only where the tile's window hangs over the feature map's border."""
    kh, kw, sh, sw, dh, dw, pt, pl = _geometry(op)
    _, ih, iw, _ = op.operands[0].type.shape
    y0, y1 = _span(out.y0, out.y1, kh, sh, dh, pt)
    x0, x1 = _span(out.x0, out.x1, kw, sw, dw, pl)
    return max(0, -y0), max(0, -x0), max(0, y1 - ih), max(0, x1 - iw)


# -- the stage -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stage:
    """The first ``len(ops)`` kernel ops of a graph, fed by ``source`` and producing ``output``."""

    source: Value
    ops: tuple[Op, ...]
    output: Value


def _spatial(v: Value) -> bool:
    return v.type.rank == 4 and v.type.shape[0] == 1


def stage_candidates(graph: Graph) -> list[Stage]:
    """Every prefix of the graph's kernel ops that can be tiled: one NHWC source (a graph input or its edge
    quantization), supported spatial ops only, and exactly one value used after the prefix."""
    ops = [op for op in graph.ops if op.kind != "const"]
    if len(graph.inputs) != 1 or not ops:
        return []
    x = graph.inputs[0]
    start = 0
    if ops[0].kind == "q.quantize" and ops[0].operands[0] is x:
        x, start = ops[0].result, 1
    if not _spatial(x) or (start == 1 and len(graph.inputs[0].uses) != 1):
        return []
    out: list[Stage] = []
    produced: set[Value] = set()
    for k in range(start, len(ops)):
        op = ops[k]
        if op.kind not in WINDOW_KINDS | POINTWISE_KINDS or len(op.results) != 1 or not _spatial(op.result):
            break
        acts = [v for v in op.operands if v.const_value is None]
        if any(v is not x and v not in produced for v in acts):
            break
        if op.kind in POINTWISE_KINDS and any(v.type.shape != op.result.type.shape for v in acts):
            break
        if op.kind in WINDOW_KINDS and any(v is not op.operands[0] for v in acts):
            break
        produced.add(op.result)
        stage_ops = tuple(ops[start:k + 1])
        inside = set(stage_ops)
        escaping = [v for v in produced if graph.is_output(v) or any(u.op not in inside for u in v.uses)]
        if len(escaping) == 1:
            out.append(Stage(x, stage_ops, escaping[0]))
    return out


def tiles(h: int, w: int, p: int) -> list[Region]:
    """A p x p grid of the rows and columns, as even as integer boundaries allow (row-major)."""
    ys = [round(i * h / p) for i in range(p + 1)]
    xs = [round(i * w / p) for i in range(p + 1)]
    return [Region(ys[i], ys[i + 1], xs[j], xs[j + 1]) for i in range(p) for j in range(p)]


def _needs(stage: Stage, tile: Region) -> dict[Value, Region]:
    """For one output tile: the region of every stage value (and of the source) the tile needs."""
    need: dict[Value, Region] = {stage.output: tile}
    for op in reversed(stage.ops):
        r = need.get(op.result)
        if r is None:
            continue
        for v in op.operands:
            if v.const_value is None:
                need[v] = input_region(op, r).union(need.get(v))
    return need


def apply_patches(graph: Graph, stage: Stage, p: int, stream: bool = False) -> None:
    """Rewrite ``stage`` of ``graph`` into p x p tiles (in place); with ``stream`` the tiles' input regions are
    streamed slices of the graph input (which then never enters the arena)."""
    _, oh, ow, _ = stage.output.type.shape
    if not 2 <= p <= min(oh, ow):
        raise PassError(f"patch-stage: {p}x{p} patches do not fit the {oh}x{ow} stage output")
    new_ops: list[Op] = []
    full: Value | None = None
    for t, tile in enumerate(tiles(oh, ow, p)):
        need = _needs(stage, tile)
        if any(r.h <= 0 or r.w <= 0 for r in need.values()):
            raise PassError(f"patch-stage: tile {t} of the {p}x{p} grid reads no input")
        made: dict[Value, tuple[Value, Region]] = {}

        def cut(v: Value, have: tuple[Value, Region], want: Region, tag: str, t: int = t,
                stream: bool = False) -> Value:
            pv, r = have
            if r == want and not stream:
                return pv
            attrs: dict[str, AttrValue] = {"begin": (0, want.y0 - r.y0, want.x0 - r.x0, 0),
                                           "size": (1, want.h, want.w, pv.type.shape[3])}
            if stream:
                attrs["stream"] = True
            op = Op("nn.slice", [pv], [pv.type.with_shape((1, want.h, want.w, pv.type.shape[3]))], attrs,
                    [f"{v.name}.t{t}.{tag}"])
            new_ops.append(op)
            return op.result

        src = stage.source
        made[src] = (src, Region(0, src.type.shape[1], 0, src.type.shape[2]))
        made[src] = (cut(src, made[src], need[src], "in", stream=stream), need[src])
        for op in stage.ops:
            r = need.get(op.result)
            if r is None:
                continue
            operands = []
            for v in op.operands:
                if v.const_value is not None:
                    operands.append(v)
                else:
                    operands.append(cut(v, made[v], input_region(op, r), f"for.{op.result.name}"))
            attrs = dict(op.attrs)
            if op.kind in WINDOW_KINDS:
                attrs["pads"] = local_pads(op, r)
            y = op.result.type
            new = Op(op.kind, operands, [y.with_shape((1, r.h, r.w, y.shape[3]))], attrs, [f"{op.result.name}.t{t}"])
            new_ops.append(new)
            made[op.result] = (new.result, r)
        part = made[stage.output][0]
        ins = Op("nn.insert", [part] if full is None else [part, full], [stage.output.type],
                 {"begin": (0, tile.y0, tile.x0, 0), "shape": tuple(stage.output.type.shape)},
                 [f"{stage.output.name}.tiles{t}"])
        new_ops.append(ins)
        full = ins.result
    assert full is not None
    at = graph.index_of(stage.ops[-1]) + 1
    for k, op in enumerate(new_ops):
        graph.insert(at + k, op)
    name = stage.output.name
    graph.replace_all_uses(stage.output, full)
    graph.outputs = [full if v is stage.output else v for v in graph.outputs]
    for op in reversed(stage.ops):
        graph.erase(op)
    full.name = name


@dataclass(frozen=True)
class Choice:
    """One way to run the stage: its split (kernel ops in the stage), patches per side, arena and MACs."""

    split: int
    patches: int
    arena_bytes: int
    macs: int


def _candidate(graph: Graph, split: int, p: int, stream: bool = False) -> tuple[Graph, Choice] | None:
    g = graph.clone()
    stages = {len(s.ops): s for s in stage_candidates(g)}
    if split not in stages:
        return None
    try:
        apply_patches(g, stages[split], p, stream)
    except PassError:
        return None
    return g, Choice(split, p, 0, total_macs(g))


def as_compiled(graph: Graph) -> Graph:
    """A copy of ``graph`` with its float edges cut as compilation cuts them (``compiler.driver.split_io``): a graph
    input quantized by its only user becomes an integer input, a dequantized output its integer operand. Memory
    figures of this copy are those of the generated C."""
    g = graph.clone()
    for i, v in enumerate(list(g.inputs)):
        users = v.users
        if v.type.dtype.is_float and len(users) == 1 and users[0].kind == "q.quantize":
            q = users[0]
            new = Value(q.result.type, v.name)
            g.replace_all_uses(q.result, new)
            g.erase(q)
            g.inputs[i] = new
    for i, v in enumerate(list(g.outputs)):
        p = v.producer
        if p is not None and p.kind == "q.dequantize" and not v.uses and g.outputs.count(v) == 1 \
                and not g.is_output(p.operands[0]):
            g.outputs[i] = p.operands[0]
            g.erase(p)
    return g


def choose(graph: Graph, max_overhead: float, splits: Sequence[int] | None = None,
           patches: Sequence[int] | None = None, stream: bool = False,
           forced: bool = False) -> tuple[Choice, Choice]:
    """(per-layer, best) over the given splits and patch counts: the smallest planned arena whose MACs stay within
    ``max_overhead`` of per-layer inference. ``best`` is per-layer itself when nothing is strictly smaller, unless
    ``forced``: then it is the best tiled candidate whatever its arena (per-layer only when there is none)."""
    base = Choice(0, 1, plan_choosing_in_place(as_compiled(graph)).arena_bytes, total_macs(graph))
    stages = stage_candidates(graph)
    split_set = [len(s.ops) for s in stages] if splits is None else list(splits)
    ranked: list[tuple[int, Graph, Choice]] = []
    for split in split_set:
        stage = next((s for s in stages if len(s.ops) == split), None)
        if stage is None:
            continue
        _, oh, ow, _ = stage.output.type.shape
        for p in patches or range(2, min(MAX_PATCHES, oh, ow) + 1):
            got = _candidate(graph, split, p, stream)
            if got is None or got[1].macs > base.macs * (1 + max_overhead):
                continue
            compiled = as_compiled(got[0])
            ranked.append((max(live_bytes(compiled), default=0), compiled, got[1]))
    ranked.sort(key=lambda c: (c[0], c[2].macs))
    best = base
    for k, (bound, g, c) in enumerate(ranked[:PLANNED_CANDIDATES]):
        if bound >= best.arena_bytes and not (forced and k == 0):
            break
        arena = plan_choosing_in_place(g).arena_bytes
        if arena < best.arena_bytes or (forced and best is base):
            best = Choice(c.split, c.patches, arena, c.macs)
    return base, best


@dataclass(frozen=True)
class PatchStage(Pass):
    """Patch-based inference (MCUNetV2): compute the network's first ``split`` kernel ops tile by tile.

    The stage output is cut into ``patches`` x ``patches`` tiles; for each, the input region its receptive field
    needs (halo included, padding only at the feature map's border) is cut out of the input with ``nn.slice``, the
    stage's ops run on the regions (each with the padding of its tile), and the tile is written into the full
    stage output with ``nn.insert`` (in place: the chain of inserts shares one buffer). Works for convolutions and
    depthwise convolutions of any kernel size, stride and dilation, pooling, elementwise ops and residual adds
    inside the stage. Results are bit-identical to per-layer inference: every tile computes exactly the elements
    of the full op.

    ``patches=0`` chooses automatically: every valid split (a prefix of the kernel ops fed by the graph input and
    leaving one tensor to the rest of the network) and 2..8 patches per side, keeping the smallest planned arena
    whose MACs are within ``max_overhead`` (a fraction) of per-layer inference; per-layer inference stays when
    nothing is strictly smaller. ``patches=1`` leaves the graph alone; ``patches>=2`` with ``split=N`` forces a
    choice (``split=0``: the best split for that patch count). Records the choice in the pass context's notes
    (``patch_stage``). With ``stream_input`` the tiles' input regions are streamed slices: the graph input stays
    outside the arena (the generated code copies each region from the application's buffer or asks its callback),
    and the choice counts that. Preconditions: a verified graph. Preserves: the interpreter's results, bit for bit.
    """

    name = "patch-stage"
    patches: int = 0
    split: int = 0
    max_overhead: float = 0.15
    stream_input: bool = False

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        """Choose (or take) the split and patch count, and rewrite the stage."""
        if self.patches == 1:
            return False
        if self.patches < 0 or self.split < 0 or self.max_overhead < 0:
            raise PassError("patch-stage: patches, split and max-overhead must be >= 0")
        splits = [self.split] if self.split else None
        if self.patches >= 2:
            stages = stage_candidates(graph)
            if self.split and self.split not in [len(s.ops) for s in stages]:
                raise PassError(f"patch-stage: the first {self.split} kernel ops cannot form a patch stage "
                                f"(possible splits: {', '.join(str(len(s.ops)) for s in stages) or 'none'})")
            base, best = choose(graph, float("inf"), splits, [self.patches], self.stream_input, forced=True)
            if best.patches == 1:
                if self.split:
                    raise PassError(f"patch-stage: {self.patches}x{self.patches} patches do not fit the output of "
                                    f"the first {self.split} kernel ops")
                warnings.warn(f"patch-stage: no layers of @{graph.name} can run in {self.patches}x{self.patches} "
                              "patches; per-layer inference", stacklevel=1)
        else:
            base, best = choose(graph, self.max_overhead, splits, stream=self.stream_input)
        ctx.notes["patch_stage"] = {
            "split": best.split, "patches": best.patches, "arena_bytes": best.arena_bytes,
            "per_layer_arena_bytes": base.arena_bytes, "macs": best.macs, "per_layer_macs": base.macs,
            "mac_overhead": best.macs / base.macs - 1 if base.macs else 0.0,
            "stream_input": self.stream_input and best.patches > 1}
        if best.patches == 1:
            return False
        stage = next(s for s in stage_candidates(graph) if len(s.ops) == best.split)
        apply_patches(graph, stage, best.patches, self.stream_input)
        return True
