"""``plan-memory``: place every activation in the arena and record the plan in the IR."""

from __future__ import annotations

from dataclasses import dataclass

from compiler.ir import Graph
from compiler.memory import BYTE_COLUMN_MIN_GAIN, attach_plan, plan_choosing_in_place
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
    kernel (their ``in_place`` attribute) where that lowers the arena, and only there, as it is slower. GEMM
    convolutions at the peak multiply raw input bytes instead of an int16 column (``byte_column``, slower again)
    when that saves at least ``byte-column-min-gain`` of the arena (default 0.02; 0 takes any saving).

    The C backend prints exactly this plan; compilation runs the pass itself when the graph carries none. Any
    later pass that changes the graph drops the plan (the pass manager clears it), so run it last; the verifier
    rejects an incomplete plan or one where two buffers live at the same time overlap illegally.
    Preconditions: a verified graph. Postconditions: every activation has an aligned offset inside the arena.
    Preserves: the ops, their order and the interpreter's results.
    """

    name = "plan-memory"
    overlap: bool = True
    byte_column_min_gain: float = BYTE_COLUMN_MIN_GAIN

    def __post_init__(self) -> None:
        if not 0.0 <= self.byte_column_min_gain < 1.0:
            raise ValueError(f"byte-column-min-gain must be in [0, 1), got {self.byte_column_min_gain}")

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        """Plan and attach; True when an offset or the arena size changed."""
        attrs = {op: op.attrs.get("in_place") for op in graph.ops if op.kind == "nn.depthwise_conv2d"}
        changed = attach_plan(graph, plan_choosing_in_place(
            graph, overlap=self.overlap, byte_column_min_gain=self.byte_column_min_gain))
        return changed or any(op.attrs.get("in_place") != a for op, a in attrs.items())
