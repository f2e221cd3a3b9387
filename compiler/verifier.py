"""The IR verifier: structural rules of the graph plus each op kind's own rules from the registry."""

from __future__ import annotations

from compiler.errors import MccError, VerifyError
from compiler.ir import Graph, Op, Value
from compiler.opdef import get_opdef


def verify(graph: Graph) -> None:
    """Check ``graph`` and raise :class:`VerifyError` naming the first op (by SSA name) and the rule it breaks.

    Structural rules: every operand is defined before its use (graph inputs or earlier results), each value is
    defined once, use-lists match operands, outputs are defined. Op rules: a registered kind, the operand count,
    attribute names and kinds, inferred shapes and element types equal to the declared result types, and the
    kind's own ``verify`` hook. A memory plan, when the graph carries one, must be complete and legal
    (:func:`compiler.memory.plan_from_ir`).
    """
    defined: set[int] = set()
    for v in graph.inputs:
        if id(v) in defined:
            raise VerifyError(f"graph @{graph.name}: input %{v.name} is listed twice")
        if v.producer is not None:
            raise VerifyError(f"graph @{graph.name}: input %{v.name} is also an op result")
        defined.add(id(v))
    for op in graph.ops:
        if op.graph is not graph:
            raise VerifyError(f"{op.label}: op list and op.graph disagree")
        for i, v in enumerate(op.operands):
            if id(v) not in defined:
                raise VerifyError(f"{op.label}: operand {i} (%{v.name}) is used before it is defined")
            if not any(u.op is op and u.index == i for u in v.uses):
                raise VerifyError(f"{op.label}: operand {i} (%{v.name}) is missing from its use-list")
        verify_op(op)
        for r in op.results:
            if r.producer is not op:
                raise VerifyError(f"{op.label}: result %{r.name} does not point back at its op")
            defined.add(id(r))
    for v in graph.values():
        for u in v.uses:
            if u.op.graph is not graph or u.index >= len(u.op.operands) or u.op.operands[u.index] is not v:
                raise VerifyError(f"graph @{graph.name}: stale use of %{v.name} by {u.op.label}")
    for v in graph.outputs:
        if id(v) not in defined:
            raise VerifyError(f"graph @{graph.name}: output %{v.name} is not defined in the graph")
    if graph.arena_bytes is not None:
        from compiler.memory import plan_from_ir

        plan_from_ir(graph)  # raises for an incomplete or conflicting plan
    else:
        placed = next((v for v in graph.values() if v.offset is not None), None)
        if placed is not None:
            raise VerifyError(f"graph @{graph.name}: %{placed.name} has an arena offset but the graph no arena size")


def verify_op(op: Op) -> None:
    """Check one op against its registry entry."""
    opdef = get_opdef(op.kind)
    lo, hi = opdef.operand_count_range()
    n = len(op.operands)
    if n < lo or (hi is not None and n > hi):
        want = f"at least {lo}" if hi is None else (f"{lo}" if lo == hi else f"{lo} to {hi}")
        raise VerifyError(f"{op.label}: takes {want} operands ({', '.join(opdef.operands)}), got {n}")
    if len(op.results) != opdef.num_results:
        raise VerifyError(f"{op.label}: has {len(op.results)} results, the op kind has {opdef.num_results}")
    where = op.label
    for name, value in op.attrs.items():
        spec = opdef.attr_specs.get(name)
        if spec is None:
            known = ", ".join(sorted(opdef.attr_specs)) or "none"
            raise VerifyError(f"{where}: unknown attribute '{name}' (known: {known})")
        op.attrs[name] = spec.coerce(value, where)
    for spec in opdef.attrs:
        opdef.get(op, spec.name)  # raises for a missing required attribute
    try:
        inferred = opdef.infer(op)
    except (IndexError, ValueError, ZeroDivisionError, TypeError) as e:
        raise VerifyError(f"{where}: shape inference failed ({e})") from None
    for r, inf in zip(op.results, inferred, strict=True):
        if tuple(r.type.shape) != tuple(inf.shape):
            raise VerifyError(f"{where}: result %{r.name} has shape {_shape(r)} but the op gives "
                              f"{'x'.join(map(str, inf.shape)) or 'scalar'}")
        if inf.dtype is not None and r.type.dtype is not inf.dtype:
            raise VerifyError(f"{where}: result %{r.name} is {r.type.dtype.value} but the op gives {inf.dtype.value}")
        if any(d < 0 for d in r.type.shape):
            raise VerifyError(f"{where}: result %{r.name} has a negative dimension")
    if opdef.verify is not None:
        try:
            opdef.verify(op)
        except MccError:
            raise
        except (IndexError, ValueError, TypeError) as e:
            raise VerifyError(f"{where}: {e}") from None


def _shape(v: Value) -> str:
    return "x".join(map(str, v.type.shape)) or "scalar"
