"""Emitters for ``nn.conv2d`` (int8)."""

from __future__ import annotations

from backends.c.emitters._util import require_int8, weight_offset
from backends.c.emitters.gemm import emit_gemm
from backends.c.lower import LowerContext, emitter
from compiler.ir import Op
from compiler.opdef import attr
from compiler.ops._common import act_range_int, per_tensor
from compiler.ops.conv import gemm_conv, gemm_conv_depth, gemm_row_split, gemm_row_split_order, requant_multipliers


@emitter("nn.conv2d")
def conv2d(op: Op, ctx: LowerContext) -> None:
    """The GEMM kernel for one group and symmetric weights (``emitters/gemm.py``), else the general direct int8
    convolution with per-channel requantization."""
    x, w = op.operands[0], op.operands[1]
    y = op.result
    require_int8(op)
    n, ih, iw, ic = x.type.shape
    _, oh, ow, oc = y.type.shape
    _, kh, kw, _ = w.type.shape
    sh, sw = attr(op, "strides")
    dh, dw = attr(op, "dilations")
    pt, pl, _, _ = attr(op, "pads")
    _, xzp = per_tensor(x, op, "input")
    _, yzp = per_tensor(y, op, "result")
    lo, hi = act_range_int(op, y.type)
    wv = w.const_value
    if gemm_conv(op) and wv is not None:
        geometry = dict(batch=n, in_h=ih, in_w=iw, in_c=ic, out_h=oh, out_w=ow, out_c=oc, k_h=kh, k_w=kw,
                        stride_h=sh, stride_w=sw, dil_h=dh, dil_w=dw, pad_top=pt, pad_left=pl)
        # a row-split column (the 16-bit layout only): its taps' order, for the weights
        order = gemm_row_split_order(kh, kw, ic) if gemm_row_split(op) else None
        emit_gemm(op, ctx, w, wv.reshape(oc, -1).astype("int64"), gemm_conv_depth(op), -xzp, geometry, yzp,
                  (lo, hi), ctx.scratch("int8_t"), row_split=order)
        return
    mult, shift = requant_multipliers(op)
    params = ctx.params(
        "mcc_conv_params", batch=n, in_h=ih, in_w=iw, in_c=ic, out_h=oh, out_w=ow, out_c=oc, k_h=kh, k_w=kw,
        stride_h=sh, stride_w=sw, dil_h=dh, dil_w=dw, pad_top=pt, pad_left=pl, groups=attr(op, "groups"),
        depth_multiplier=1, in_offset=-xzp, w_offset=weight_offset(op), out_zp=yzp, act_min=lo, act_max=hi)
    bias = ctx.weight(op.operands[2]) if len(op.operands) > 2 else "NULL"
    ctx.call("mcc_conv2d_s8", [params, ctx.cact(x), ctx.weight(w), bias, ctx.table("mult", mult.astype("int32")),
                               ctx.table("shift", shift.astype("int32")), ctx.act(y), ctx.scratch()],
             "mcc_conv2d.c")
