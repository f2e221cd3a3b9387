"""Region ops of patch-based inference: ``nn.slice`` cuts a box out of a tensor, ``nn.insert`` writes a box into
one.

The ``patch-stage`` pass rewrites a network's first layers into one small computation per output tile: the input
region of the tile is cut out with ``nn.slice``, the stage's ops run on the regions, and the tile is written into
the full stage output with a chain of ``nn.insert`` ops. The first insert of a chain has no ``full`` operand: it
creates the tensor (bytes outside the box are unspecified until later inserts write them; the reference fills
them with zeros). A later insert updates ``full``; when ``full`` has no other user the memory planner gives the
result ``full``'s bytes, so the chain fills one buffer in place. Both ops move stored values unchanged (the result
carries the input's quantization). A slice with ``stream`` reads a graph input that never enters the arena: the
generated code copies the region from the application's input buffer, or asks the application's callback for it
(``--stream-input``), so a camera frame never has to sit in SRAM whole.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from compiler.ir import Op
from compiler.opdef import AttrKind, AttrSpec, Inferred, OpDef, attr, register_op
from compiler.ops._common import check_quant_consistency, require


def _box(op: Op, begin: Sequence[int], size: Sequence[int], shape: Sequence[int], what: str) -> None:
    require(len(begin) == len(shape) and len(size) == len(shape), op,
            f"begin and {what} must hold one value per axis ({len(shape)})")
    for a, (b, n, d) in enumerate(zip(begin, size, shape, strict=True)):
        require(b >= 0 and n >= 1 and b + n <= d, op, f"axis {a}: box [{b}, {b + n}) is not inside 0..{d}")


# -- nn.slice ----------------------------------------------------------------------------------------------------
def _slice_infer(op: Op) -> list[Inferred]:
    x = op.operands[0].type
    begin, size = attr(op, "begin"), attr(op, "size")
    _box(op, begin, size, x.shape, "size")
    return [Inferred(tuple(size), x.dtype)]


def _same_quant(op: Op) -> None:
    check_quant_consistency(op, [*op.operands, *op.results])
    for v in op.operands:
        q = v.type.quant
        require(q is None or q.is_per_tensor, op, "region ops take per-tensor quantized or float tensors")
        require(op.results[0].type.quant == q, op, "the result must carry the operands' quantization")


def _slice_verify(op: Op) -> None:
    _same_quant(op)
    if attr(op, "stream"):
        x = op.operands[0]
        src = x.producer.operands[0] if x.producer is not None and x.producer.kind == "q.quantize" else x
        require(op.graph is None or any(src is v for v in op.graph.inputs), op,
                "a streamed slice must read a graph input (or its edge quantization)")


def _slice_ref(op: Op, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    begin, size = attr(op, "begin"), attr(op, "size")
    box = tuple(slice(b, b + n) for b, n in zip(begin, size, strict=True))
    return [np.array(inputs[0][box], copy=True)]


SLICE = register_op(OpDef(
    name="nn.slice",
    summary="the box [begin, begin + size) of a tensor (a patch's input region)",
    operands=("input",),
    attrs=(AttrSpec("begin", AttrKind.INTS, doc="first index of the box on every axis"),
           AttrSpec("size", AttrKind.INTS, doc="extent of the box on every axis (the result shape)"),
           AttrSpec("stream", AttrKind.BOOL, False, "read a graph input region by region from outside the arena "
                    "(the application's input buffer or its region callback)")),
    infer=_slice_infer, verify=_slice_verify, reference=_slice_ref,
))


# -- nn.insert ---------------------------------------------------------------------------------------------------
def _insert_infer(op: Op) -> list[Inferred]:
    part = op.operands[0].type
    shape = tuple(attr(op, "shape"))
    if len(op.operands) > 1:
        full = op.operands[1].type
        require(full.shape == shape, op, f"shape {list(shape)} must be the full tensor's {list(full.shape)}")
        require(full.dtype == part.dtype, op, "the part and the full tensor must have one element type")
    _box(op, attr(op, "begin"), part.shape, shape, "the part's shape")
    return [Inferred(shape, part.dtype)]


def _insert_ref(op: Op, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    part = inputs[0]
    y = op.results[0].type
    out = np.array(inputs[1], copy=True) if len(inputs) > 1 else np.zeros(y.shape, dtype=y.dtype.np)
    out[tuple(slice(b, b + n) for b, n in zip(attr(op, "begin"), part.shape, strict=True))] = part
    return [out]


INSERT = register_op(OpDef(
    name="nn.insert",
    summary="the full tensor with part written at begin (without full: a new tensor, unspecified elsewhere)",
    operands=("part", "full?"),
    attrs=(AttrSpec("begin", AttrKind.INTS, doc="where the part's first element goes"),
           AttrSpec("shape", AttrKind.INTS, doc="the full tensor's shape")),
    infer=_insert_infer, verify=_same_quant, reference=_insert_ref,
))
