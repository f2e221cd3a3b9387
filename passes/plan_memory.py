"""``plan-memory``: place every activation in the arena and record the plan in the IR."""

from __future__ import annotations

from dataclasses import dataclass

from compiler.ir import Graph
from compiler.memory import attach_plan, plan_choosing_in_place
from compiler.passmanager import Pass, PassContext


@dataclass(frozen=True)
class PlanMemory(Pass):
    """Plan the arena for the graph's current op order and write it into the IR.

    Every activation (graph inputs included; constants live in flash) gets an ``offset`` in one arena of
    ``arena_bytes`` (printed as ``at N`` after its type and ``arena N`` after the graph's parameters). Reshapes,
    flattens and identities share their operand's bytes; with ``overlap`` (the default) a result may share bytes
    with an operand that dies at its op where the op's kernels allow it (:mod:`compiler.overlap`). The placement
    is :func:`compiler.memory.plan_memory`: several first-fit orders, local search and, on small graphs, an
    exhaustive search, compared against the lower bound. Depthwise convolutions switch to MCUNet's in-place
    kernel (their ``in_place`` attribute) where that lowers the arena, and only there, as it is slower.

    The C backend prints exactly this plan; compilation runs the pass itself when the graph carries none. Any
    later pass that changes the graph drops the plan (the pass manager clears it), so run it last; the verifier
    rejects an incomplete plan or one where two buffers live at the same time overlap illegally.
    Preconditions: a verified graph. Postconditions: every activation has an aligned offset inside the arena.
    Preserves: the ops, their order and the interpreter's results.
    """

    name = "plan-memory"
    overlap: bool = True

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        """Plan and attach; True when an offset or the arena size changed."""
        attrs = {op: op.attrs.get("in_place") for op in graph.ops if op.kind == "nn.depthwise_conv2d"}
        changed = attach_plan(graph, plan_choosing_in_place(graph, overlap=self.overlap))
        return changed or any(op.attrs.get("in_place") != a for op, a in attrs.items())
