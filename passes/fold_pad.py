"""``fold-pad``: absorb an explicit spatial ``nn.pad`` into the convolutions that read it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.ir import Graph, Op
from compiler.opdef import attr
from compiler.ops.shape import pad_fill
from compiler.passmanager import Pass, PassContext
from compiler.rewrite import RewritePattern, Rewriter, apply_patterns

CONV_KINDS = ("nn.conv2d", "nn.depthwise_conv2d")


def _pads_as_zero(op: Op) -> bool:
    """True when ``op``'s fill is what a convolution's implicit padding contributes: real zero, i.e. the stored
    zero point (so ``x - zp`` is 0 there), or 0.0 on float tensors."""
    y = op.results[0].type
    fill = np.broadcast_to(pad_fill(op), y.shape)
    if y.quant is None:
        return bool(np.all(fill == 0))
    zp = np.broadcast_to(np.asarray(y.quant.zero_points_for(y.shape)), y.shape)
    return bool(np.array_equal(fill, zp))


class _FoldPadIntoConv(RewritePattern):
    kinds = ("nn.pad",)

    def match_and_rewrite(self, op: Op, rewriter: Rewriter) -> bool:
        x, y = op.operands[0], op.result
        if x.type.rank != 4 or rewriter.graph.is_output(y) or not y.uses:
            return False
        p = attr(op, "pads")
        if p[0] or p[3] or p[4] or p[7]:
            return False  # batch or channel padding is not a convolution's
        if not all(u.op.kind in CONV_KINDS and u.index == 0 for u in y.uses):
            return False
        if not _pads_as_zero(op):
            return False
        for use in list(y.uses):
            conv = use.op
            top, left, bottom, right = attr(conv, "pads")
            rewriter.set_attrs(conv, pads=(top + p[1], left + p[2], bottom + p[5], right + p[6]))
            rewriter.set_operand(conv, 0, x)
        rewriter.erase_op(op)
        return True


@dataclass(frozen=True)
class FoldPad(Pass):
    """Fold an explicit ``nn.pad`` of the H and W axes of an NHWC tensor into the ``pads`` of the convolutions and
    depthwise convolutions that read it.

    A convolution's implicit padding contributes nothing to the sums — exactly what a pad with real value 0 does
    (quantized: the fill stored as the input's zero point, so ``x - zp`` is 0). The pad must feed only such
    convolutions (as their data operand), must not be a graph output, and must pad neither batch nor channels.
    Pooling is left alone: its padding is excluded from the window, which an explicit pad is not. Preconditions:
    none. Postconditions: no foldable pad is left. Preserves: the interpreter's results bit for bit. Saves the
    padded copy of the tensor, often the largest buffer of a network's first layers.
    """

    name = "fold-pad"

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        """Fold every eligible pad."""
        return apply_patterns(graph, [_FoldPadIntoConv()])
