"""Emitter for ``nn.softmax`` (int8, last axis): a per-layer table of fixed-point exps, the rest in C.

The exp of a scaled input difference depends only on ``max - x`` (0..255 for int8), so its Q0.31 value is
tabulated here with the interpreter's own fixed-point code; the kernel sums, inverts and scales exactly as
:func:`compiler.ops.softmax.softmax_kernel` does.
"""

from __future__ import annotations

import math

import numpy as np

from backends.c.emitters._util import require_int8
from backends.c.lower import LowerContext, emitter
from compiler.errors import UnsupportedOpError
from compiler.ir import Op, TensorType
from compiler.opdef import attr
from compiler.ops import fixedpoint as fp
from compiler.ops.softmax import SCALED_DIFF_INTEGER_BITS, softmax_params

MAX_DEPTH = 8191
"""The kernel sums up to this many Q12.19 terms (each at most 2^19) in a uint32."""


def exp_table(inp: TensorType, beta: float) -> np.ndarray:
    """``table[d]``: the reference's Q0.31 exp for the difference ``x - max = -d``, 0 below ``diff_min``."""
    p = softmax_params(inp, beta)
    diff = -np.arange(256, dtype=np.int64)
    used = diff >= p.diff_min
    scaled = fp.srdhm(np.where(used, diff, 0) * (1 << p.input_left_shift), p.input_multiplier)
    exps = fp.exp_on_negative_values(scaled, SCALED_DIFF_INTEGER_BITS)
    return np.where(used, exps, 0).astype(np.int32)


@emitter("nn.softmax")
def softmax(op: Op, ctx: LowerContext) -> None:
    """``mcc_softmax_s8`` over [rows, depth]."""
    require_int8(op)
    x, y = op.operands[0], op.results[0]
    shape = x.type.shape
    axis = attr(op, "axis") % len(shape)
    if axis != len(shape) - 1:
        raise UnsupportedOpError(f"{op.label}: the C softmax runs along the last axis only, not axis {axis}")
    depth = shape[-1]
    if depth > MAX_DEPTH:
        raise UnsupportedOpError(f"{op.label}: the C softmax handles at most {MAX_DEPTH} elements per row, "
                                 f"got {depth}")
    if x.type.num_elements == 0:
        return
    sp = softmax_params(x.type, attr(op, "beta"))  # a size-first build computes the exps from these
    table = ctx.table("exp", exp_table(x.type, attr(op, "beta")),
                      np.array([sp.input_multiplier, sp.input_left_shift, sp.diff_min], np.int32))
    params = ctx.params("mcc_softmax_params", rows=math.prod(shape[:-1]), depth=depth)
    ctx.call("mcc_softmax_s8", [params, table, ctx.cact(x), ctx.act(y)], "mcc_softmax.c")
