"""Emitters for int8 data movement: ``nn.pad``, ``nn.concat``, ``nn.transpose``, ``nn.resize_nearest`` and the
copies of ``nn.reshape``/``nn.identity``/``nn.flatten`` that the memory plan did not alias.

Everything is resolved here: shapes padded to 4-D, transpose strides, concat block sizes and offsets, the pad
fill quantized exactly as the interpreter quantizes it, and resize's source row/column tables computed with the
interpreter's own index rule. The kernels only move bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from backends.c.emitters._util import require_int8
from backends.c.lower import LowerContext, emitter
from compiler.errors import UnsupportedOpError
from compiler.ir import DType, Op, Value
from compiler.opdef import attr
from compiler.ops.shape import nearest_indices
from compiler.quant import quantize_array


def _source(ctx: LowerContext, v: Value) -> str:
    """Pointer to an operand: its arena slot, or its flash array when it is a constant."""
    return ctx.weight(v) if v.const_value is not None else ctx.cact(v)


def _to_4d(shape: Sequence[int], op: Op) -> tuple[int, ...]:
    if len(shape) > 4:
        raise UnsupportedOpError(f"{op.label}: the C kernel handles rank <= 4, got rank {len(shape)}")
    return (1,) * (4 - len(shape)) + tuple(shape)


def _strides(shape: Sequence[int]) -> list[int]:
    """Row-major element strides."""
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return out[::-1]


@emitter("nn.reshape", "nn.identity", "nn.flatten")
def copy(op: Op, ctx: LowerContext) -> None:
    """A byte copy (the same row-major data under another shape)."""
    require_int8(op)
    x, y = op.operands[0], op.results[0]
    ctx.call("mcc_copy", [_source(ctx, x), ctx.act(y), str(y.type.nbytes)], "mcc_data.c")


def pad_fill(op: Op) -> int:
    """The stored fill value of an int8 ``nn.pad``, as the interpreter quantizes it (one value for all channels)."""
    y = op.results[0].type
    assert y.quant is not None
    fill = np.unique(quantize_array(np.asarray(attr(op, "value"), dtype=np.float32), y.quant.scales_for(y.shape),
                                    y.quant.zero_points_for(y.shape), y.dtype.qmin, y.dtype.qmax))
    if fill.size != 1:
        raise UnsupportedOpError(f"{op.label}: the per-channel quantized fill differs between channels")
    return int(fill[0])


@emitter("nn.pad")
def pad(op: Op, ctx: LowerContext) -> None:
    """``mcc_pad_s8`` on the shapes padded to 4-D (pads at the end of an axis follow from the output shape)."""
    require_int8(op)
    x, y = op.operands[0], op.results[0]
    rank = x.type.rank
    ins, outs = _to_4d(x.type.shape, op), _to_4d(y.type.shape, op)
    before = (0,) * (4 - rank) + tuple(attr(op, "pads"))[:rank]
    fields: dict[str, int | str] = {}
    for i in range(4):
        fields.update({f"in_d{i}": ins[i], f"out_d{i}": outs[i], f"pad_d{i}": before[i]})
    params = ctx.params("mcc_pad_params", **fields, value=pad_fill(op))
    ctx.call("mcc_pad_s8", [params, _source(ctx, x), ctx.act(y)], "mcc_data.c")


@emitter("nn.concat")
def concat(op: Op, ctx: LowerContext) -> None:
    """One ``mcc_concat_s8`` call per input: ``outer`` strided block copies into its slot of the output."""
    y = op.results[0]
    for v in (*op.operands, y):
        if v.type.dtype is not DType.INT8:
            raise UnsupportedOpError(f"{op.label}: the C backend has int8 kernels only; %{v.name} is "
                                     f"{v.type.dtype.value}")
    shape = y.type.shape
    axis = attr(op, "axis") % len(shape)
    outer, inner = math.prod(shape[:axis]), math.prod(shape[axis + 1:])
    offset = 0
    for v in op.operands:
        block = v.type.shape[axis] * inner
        if block and outer:
            params = ctx.params("mcc_concat_params", outer=outer, in_block=block, out_block=shape[axis] * inner,
                                out_offset=offset)
            ctx.call("mcc_concat_s8", [params, _source(ctx, v), ctx.act(y)], "mcc_data.c")
        offset += block


@emitter("nn.transpose")
def transpose(op: Op, ctx: LowerContext) -> None:
    """``mcc_transpose_s8``: output axis ``i`` walks input axis ``perm[i]`` with that axis's stride."""
    require_int8(op)
    x, y = op.operands[0], op.results[0]
    perm = tuple(attr(op, "perm"))
    outs = _to_4d(y.type.shape, op)
    xs = _strides(x.type.shape)
    strides = (0,) * (4 - len(perm)) + tuple(xs[p] for p in perm)
    fields: dict[str, int | str] = {}
    for i in range(4):
        fields.update({f"out_d{i}": outs[i], f"in_s{i}": strides[i]})
    params = ctx.params("mcc_transpose_params", **fields)
    ctx.call("mcc_transpose_s8", [params, _source(ctx, x), ctx.act(y)], "mcc_data.c")


@emitter("nn.resize_nearest")
def resize_nearest(op: Op, ctx: LowerContext) -> None:
    """``mcc_resize_nearest_s8`` with source row and column tables from the interpreter's index rule."""
    require_int8(op)
    x, y = op.operands[0], op.results[0]
    n, ih, iw, c = x.type.shape
    oh, ow = attr(op, "size")
    ac, hpc = attr(op, "align_corners"), attr(op, "half_pixel_centers")
    rows = ctx.table("rows", nearest_indices(ih, oh, ac, hpc).astype(np.int32))
    cols = ctx.table("cols", nearest_indices(iw, ow, ac, hpc).astype(np.int32))
    params = ctx.params("mcc_resize_params", batch=n, in_h=ih, in_w=iw, channels=c, out_h=oh, out_w=ow)
    ctx.call("mcc_resize_nearest_s8", [params, rows, cols, _source(ctx, x), ctx.act(y)], "mcc_data.c")


Box = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]


def coalesce_box(size: Sequence[int], src: Sequence[int], src_begin: Sequence[int], dst: Sequence[int],
                 dst_begin: Sequence[int]) -> Box:
    """The same copy with fewer, longer rows: an inner axis that the box spans whole in both tensors (its extent
    equals both shapes') is merged into the axis outside it, repeatedly. Returns (size, src shape, src
    begin, dst shape, dst begin), padded back to 4 axes with leading 1s; the elements copied and their order are
    unchanged, only the number of contiguous runs (one ``memcpy`` each) falls."""
    axes = [list(t) for t in zip(size, src, src_begin, dst, dst_begin, strict=True)]
    k = len(axes) - 1
    while k > 0:
        z, s, _, d, _ = axes[k]
        if z == s == d:  # whole in both, so it starts at 0 in both
            oz, os_, osb, od, odb = axes[k - 1]
            axes[k - 1] = [oz * z, os_ * s, osb * s, od * d, odb * d]
            del axes[k]
        k -= 1
    while len(axes) < 4:
        axes.insert(0, [1, 1, 0, 1, 0])
    cols = tuple(tuple(a[i] for a in axes) for i in range(5))
    return cols[0], cols[1], cols[2], cols[3], cols[4]


def _box(ctx: LowerContext, op: Op, size: Sequence[int], src: Value, src_begin: Sequence[int], dst: Value,
         dst_begin: Sequence[int], coalesce: bool = True) -> str:
    """Parameters of one ``mcc_box_copy``: a box of ``size`` from ``src`` at ``src_begin`` into ``dst``. With
    ``coalesce`` (not for a streamed slice, whose reader is given NHWC rows and columns) whole inner axes are merged
    so each ``memcpy`` moves a longest contiguous run."""
    pad = 4 - len(size)
    s4, sb = _to_4d(src.type.shape, op), (0,) * pad + tuple(src_begin)
    d4, db = _to_4d(dst.type.shape, op), (0,) * pad + tuple(dst_begin)
    z = _to_4d(size, op)
    if coalesce:
        z, s4, sb, d4, db = coalesce_box(z, s4, sb, d4, db)
    return ctx.params("mcc_box_params", size_d0=z[0], size_d1=z[1], size_d2=z[2], size_d3=z[3],
                      src_d1=s4[1], src_d2=s4[2], src_d3=s4[3], src_b0=sb[0], src_b1=sb[1], src_b2=sb[2],
                      src_b3=sb[3], dst_d1=d4[1], dst_d2=d4[2], dst_d3=d4[3], dst_b0=db[0], dst_b1=db[1],
                      dst_b2=db[2], dst_b3=db[3], elem_bytes=dst.type.dtype.np.itemsize)


@emitter("nn.slice")
def slice_(op: Op, ctx: LowerContext) -> None:
    """The box's rows copied out of the operand."""
    x, y = op.operands[0], op.results[0]
    stream = bool(attr(op, "stream"))
    params = _box(ctx, op, y.type.shape, x, attr(op, "begin"), y, [0] * y.type.rank, coalesce=not stream)
    if stream:
        if x not in ctx.input_fields or y.type.rank != 4:
            raise UnsupportedOpError(f"{op.label}: a streamed slice must cut an NHWC box out of a graph input")
        ctx.call("mcc_read_region", [params, f"in ? (const void *)in->{ctx.input_fields[x]} : NULL", "read", "user",
                                     ctx.act(y)], "mcc_data.c")
        return
    ctx.call("mcc_box_copy", [params, _source(ctx, x), ctx.act(y)], "mcc_data.c")


@emitter("nn.insert")
def insert(op: Op, ctx: LowerContext) -> None:
    """The part's rows copied into the full tensor (in place when the plan gives the result the full's bytes)."""
    part, y = op.operands[0], op.results[0]
    if len(op.operands) > 1:
        full = op.operands[1]
        if ctx.plan.offset(full) != ctx.plan.offset(y):
            ctx.call("mcc_copy", [f"(const int8_t *)(arena + {ctx.plan.offset(full)})",
                                  f"(int8_t *)(arena + {ctx.plan.offset(y)})", str(y.type.nbytes)], "mcc_data.c")
    params = _box(ctx, op, part.type.shape, part, [0] * part.type.rank, y, attr(op, "begin"))
    ctx.call("mcc_box_copy", [params, _source(ctx, part), ctx.act(y)], "mcc_data.c")
