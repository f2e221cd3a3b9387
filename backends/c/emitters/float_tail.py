"""Emitters for the float32 ops a model may end with: ``q.dequantize`` (int8 → f32) and ``nn.log_softmax`` (f32).

TFLite models can leave the integer domain before their last op (e.g. DEQUANTIZE → LOG_SOFTMAX). These kernels
compute in float32 exactly as TFLM's reference kernels on an x86-64 host do, with glibc's expf/logf reproduced in
plain C (``runtime_c/mcc_float.c``), so the float outputs match TFLM and the interpreter bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

from backends.c.lower import LowerContext, emitter
from compiler.errors import UnsupportedOpError
from compiler.ir import DType, Op
from compiler.opdef import attr


@emitter("q.dequantize")
def dequantize(op: Op, ctx: LowerContext) -> None:
    """``mcc_dequantize_s8_f32``: per-tensor int8 to float32."""
    x, y = op.operands[0], op.results[0]
    q = x.type.quant
    if x.type.dtype is not DType.INT8 or y.type.dtype is not DType.FLOAT32 or q is None or not q.is_per_tensor:
        raise UnsupportedOpError(f"{op.label}: the C dequantize handles per-tensor int8 to f32 only")
    if x.type.num_elements == 0:
        return
    scale = float(np.float32(q.scale[0])).hex() + "f"  # a hex literal: the float scale exactly
    ctx.call("mcc_dequantize_s8_f32", [ctx.cact(x), ctx.act(y), str(x.type.num_elements), str(q.zero_point[0]),
                                       scale], "mcc_float.c")


@emitter("nn.log_softmax")
def log_softmax(op: Op, ctx: LowerContext) -> None:
    """``mcc_log_softmax_f32`` over [rows, depth] (last axis)."""
    x, y = op.operands[0], op.results[0]
    if x.type.dtype is not DType.FLOAT32:
        raise UnsupportedOpError(f"{op.label}: the C log-softmax handles f32 only, not {x.type.dtype.value}")
    shape = x.type.shape
    axis = attr(op, "axis") % len(shape)
    if axis != len(shape) - 1:
        raise UnsupportedOpError(f"{op.label}: the C log-softmax runs along the last axis only, not axis {axis}")
    if x.type.num_elements == 0:
        return
    params = ctx.params("mcc_softmax_params", rows=math.prod(shape[:-1]), depth=shape[-1])
    ctx.call("mcc_log_softmax_f32", [params, ctx.cact(x), ctx.act(y)], "mcc_float.c")
