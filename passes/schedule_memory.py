"""``schedule-memory``: reorder ops so that the peak of live activation bytes is as small as possible."""

from __future__ import annotations

from dataclasses import dataclass

from compiler.ir import Graph
from compiler.memory import SCHEDULE_STATES, apply_schedule, schedule_memory
from compiler.passmanager import Pass, PassContext


@dataclass(frozen=True)
class ScheduleMemory(Pass):
    """Pick the execution order of a branched graph (residual adds, concats, SE blocks) with the lowest peak SRAM.

    The order comes from :func:`compiler.memory.schedule_memory`: an exact search over the sets of ops that can
    run first, turning into a beam search beyond ``max_states`` states. With ``overlap`` (the default) an op counts
    the bytes its result may share with an operand dying there (:mod:`compiler.overlap`), as the planner places
    them; ``overlap=false`` orders for plain, non-overlapping buffers. Each constant moves just before its first
    user. The graph changes only when the new order's peak of live bytes is strictly lower than the current one's,
    so running the pass twice changes nothing the second time.

    Preconditions: a verified graph. Postconditions: ``graph.ops`` is a valid topological order; ops with side
    effects (``pure=False``) keep their relative order. Preserves: every op, value, attribute and the interpreter's
    results (bit for bit); only the order of ``graph.ops`` changes.
    """

    name = "schedule-memory"
    max_states: int = SCHEDULE_STATES
    overlap: bool = True

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        """Search the order; reorder ``graph.ops`` in place when it lowers the peak."""
        schedule = schedule_memory(graph, max_states=self.max_states, overlap=self.overlap)
        if schedule.peak >= schedule.original_peak:
            return False
        apply_schedule(graph, schedule.order)
        return True
