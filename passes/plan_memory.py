"""``plan-memory``: place every activation in the arena and record the plan in the IR."""

from __future__ import annotations

from dataclasses import dataclass

from compiler.ir import Graph
from compiler.memory import attach_plan, plan_memory
from compiler.passmanager import Pass, PassContext


@dataclass(frozen=True)
class PlanMemory(Pass):
    """Plan the arena for the graph's current op order and write it into the IR.

    Every activation (graph inputs included; constants live in flash) gets an ``offset`` in one arena of
    ``arena_bytes`` (printed as ``at N`` after its type and ``arena N`` after the graph's parameters). Reshapes,
    flattens and identities share their operand's bytes; with ``overlap`` (the default) a result may share bytes
    with an operand that dies at its op where the op's kernels allow it (:mod:`compiler.overlap`). The placement
    is :func:`compiler.memory.plan_memory`: several first-fit orders, local search and, on small graphs, an
    exhaustive search, compared against the lower bound.

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
        return attach_plan(graph, plan_memory(graph, overlap=self.overlap))
