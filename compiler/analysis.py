"""Analyses: plain functions over a graph. The CLI, the reports and (later) the NAS all call these."""

from __future__ import annotations

from dataclasses import dataclass

from compiler.ir import Graph, Op
from compiler.memory import MemoryPlan
from compiler.opdef import get_opdef, scratch_bytes


def op_macs(op: Op) -> int:
    """Multiply-accumulates of one op, from its registry entry."""
    return int(get_opdef(op.kind).macs(op))


def total_macs(graph: Graph) -> int:
    """Multiply-accumulates of one inference."""
    return sum(op_macs(op) for op in graph.ops)


def weight_bytes(graph: Graph) -> int:
    """Bytes of every constant tensor (what goes to flash)."""
    return sum(op.result.type.nbytes for op in graph.ops if op.kind == "const")


@dataclass(frozen=True)
class GraphStats:
    """Op count, kernel-op count (non-const), MACs and constant bytes of a graph."""

    ops: int
    compute_ops: int
    macs: int
    weight_bytes: int


def graph_stats(graph: Graph) -> GraphStats:
    """Summary figures of ``graph``."""
    return GraphStats(len(graph.ops), sum(op.kind != "const" for op in graph.ops), total_macs(graph),
                      weight_bytes(graph))


@dataclass(frozen=True)
class LayerRow:
    """One kernel op as ``mcc analyze`` and ``report.json`` show it."""

    index: int
    """Position in ``graph.ops`` (the execution order)."""
    name: str
    op: str
    shape: tuple[int, ...]
    """Shape of the (first) result."""
    macs: int
    weight_bytes: int
    """Bytes of the constants it reads that no earlier op read (so the column sums to the model's weights)."""
    live_bytes: int
    """Arena bytes it needs while it runs: the buffers live then, less what its result may share with an operand
    dying at it (from the memory plan; the largest value is the plan's lower bound)."""
    scratch_bytes: int
    """Bytes of kernel scratch it needs while it runs (planned inside the arena, counted in ``live_bytes``)."""
    peak: bool
    """True for the first op where the live bytes reach their maximum."""


def layer_table(graph: Graph, plan: MemoryPlan) -> list[LayerRow]:
    """Per-layer figures of ``graph`` (every op but constants) under memory plan ``plan`` of the same op order."""
    if len(plan.live_bytes) != len(graph.ops):
        raise ValueError("the memory plan was made for another op order of this graph")
    kernels = [i for i, op in enumerate(graph.ops) if op.kind != "const"]
    peak_at = max(kernels, key=lambda i: (plan.live_bytes[i], -i), default=-1)
    seen: set[Op] = set()
    rows = []
    for i in kernels:
        op = graph.ops[i]
        consts = {v.producer for v in op.operands if v.producer is not None and v.producer.kind == "const"}
        wbytes = sum(c.result.type.nbytes for c in consts if c not in seen)
        seen |= consts
        rows.append(LayerRow(i, str(op.results[0].name) if op.results else op.kind, op.kind,
                             op.results[0].type.shape if op.results else (), op_macs(op), wbytes,
                             plan.live_bytes[i], scratch_bytes(op), i == peak_at))
    return rows
