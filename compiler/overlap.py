"""Legal overlap of an op's result with an operand that dies at the op: the access contract of the kernels.

A kernel that writes its result unit by unit in ascending address order (a unit is an output pixel — all its
channels — for windowed ops, one element for elementwise ops), and that reads for unit ``p`` only the input it
declares, can have its result placed *over* an operand that dies at the op, as long as the bytes it writes for unit
``p`` have already been consumed: they lie below every input byte still needed by unit ``p`` and the units after it
(after it only, for elementwise kernels, which read a unit's inputs before they write it). If the result starts
``d`` bytes below the operand (``offset(operand) - offset(result) = d``) that holds for every unit exactly when
``d >= D``, with

    D = max over units p of ( result bytes up to and including unit p  -  lowest operand byte needed from unit p on )

:func:`overlap_distance` computes ``D`` from the op's declared access map (:class:`AccessMap`, the ``overlap``
function of its :class:`~compiler.opdef.OpDef`). The planner (:mod:`compiler.memory`) then lets the two buffers
share bytes: a pointwise convolution that doubles the channels writes into the bytes its input frees, a 3x3
depthwise convolution needs ``in + C*(W + 2)`` bytes instead of ``2*in``, an activation runs in place.

Every C kernel of an op kind with an ``overlap`` function honours this contract (``runtime_c/``: one pass over the
output in raster order, no scratch copy of the result); the randomised C-versus-interpreter tests and the guarded
runs check it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from compiler.ir import Op

NO_INPUT = np.iinfo(np.int64).max
"""``first_needed`` of a unit that reads nothing from the operand (padding only)."""


@dataclass(frozen=True)
class AccessMap:
    """How a kernel walks an op's result and one operand.

    ``first_needed[p]`` is the lowest byte of the operand that unit ``p`` of the result reads (:data:`NO_INPUT` when
    it reads none), ``unit_bytes`` the bytes of one result unit, and ``reads_before_write`` says the kernel reads all
    of a unit's input before it writes any of that unit (so the unit may overwrite its own input).
    """

    first_needed: np.ndarray
    unit_bytes: int
    reads_before_write: bool


@dataclass(frozen=True)
class InPlace:
    """A kernel that overlaps its result with the operand at exactly one distance ``d`` (usually 0: the same
    bytes), e.g. a depthwise convolution that copies one input channel at a time into scratch and writes that
    channel's outputs where the channel was. Any other overlap is illegal."""

    d: int = 0


class Overlap(NamedTuple):
    """Where a result may overlap an operand: at ``d`` or more bytes below it, or (``exact``) at exactly ``d``."""

    d: int
    exact: bool = False


OverlapFn = Callable[[Op, int], "AccessMap | InPlace | None"]
"""An op kind's access map for operand ``k`` (None: the result must not overlap that operand)."""


def overlap_distance(op: Op, k: int) -> Overlap | None:
    """Where the result may overlap operand ``k``: the smallest ``offset(operand k) - offset(result)`` at which it
    may (every larger distance is legal too), or the one distance an in-place kernel allows (``exact``).

    None when the op kind declares no access contract for that operand. The value may be negative (the result may
    then start inside the operand) and is not clamped to the buffer sizes.
    """
    from compiler.opdef import get_opdef

    fn = get_opdef(op.kind).overlap
    if fn is None or len(op.results) != 1:
        return None
    amap = fn(op, k)
    if amap is None:
        return None
    if isinstance(amap, InPlace):
        return Overlap(amap.d, exact=True)
    return Overlap(overlap_distance_of(amap))


def overlap_distance_of(amap: AccessMap | None) -> int:
    """The smallest legal distance of an access map (a huge negative number when the result reads nothing)."""
    if amap is None:
        return 1 << 62
    need = amap.first_needed.astype(np.int64)
    # lowest byte needed by unit p and every later unit (or only the later ones)
    later = np.minimum.accumulate(need[::-1])[::-1]
    if amap.reads_before_write:
        later = np.append(later[1:], NO_INPUT)
    ends = (np.arange(1, need.size + 1, dtype=np.int64)) * amap.unit_bytes
    finite = later != NO_INPUT
    if not finite.any():
        return -(1 << 62)  # the result never reads the operand at all: any placement is legal
    return int(np.max(ends[finite] - later[finite]))


def pairwise_saving(d: int, operand_bytes: int, result_bytes: int, exact: bool = False) -> int:
    """The most bytes the result and an operand can share when the result may start ``d`` or more bytes below the
    operand (``offset(operand) - offset(result) >= d``), or exactly ``d`` below it."""

    def shared(e: int) -> int:  # bytes in common when the operand starts e bytes above the result
        return max(0, min(result_bytes, e + operand_bytes) - max(0, e))

    if exact:
        return shared(d)

    # shared() rises up to min(0, result - operand), stays at its maximum until max(0, result - operand), then falls
    return shared(max(d, min(0, result_bytes - operand_bytes)))


# -- access maps of the kernel families ----------------------------------------------------------------------------
def window_access(op: Op, k: int) -> AccessMap | None:
    """Convolution, depthwise convolution and pooling over NHWC: unit = output pixel, reads its window.

    The lowest byte a pixel reads is channel 0 of the first valid row and column of its window (the kernels loop
    over output channels inside the pixel — one by one, or four at a time in the specialised depthwise kernels —
    and read the window again for each, so the pixel's own input counts).
    """
    from compiler.opdef import attr

    if k != 0:
        return None
    x, y = op.operands[0].type, op.results[0].type
    n, ih, iw, ic = x.shape
    _, oh, ow, oc = y.shape
    if op.kind in ("nn.avg_pool2d", "nn.max_pool2d"):
        kh, kw = attr(op, "kernel")
        dh = dw = 1
    else:
        wshape = op.operands[1].type.shape
        kh, kw = wshape[1], wshape[2]
        dh, dw = attr(op, "dilations")
    sh, sw = attr(op, "strides")
    pt, pl = attr(op, "pads")[0], attr(op, "pads")[1]
    rows = _first_valid(np.arange(oh) * sh - pt, kh, dh, ih)
    cols = _first_valid(np.arange(ow) * sw - pl, kw, dw, iw)
    pix = rows[:, None] * iw + cols[None, :]
    bad = (rows[:, None] < 0) | (cols[None, :] < 0)
    per_image = np.where(bad, -1, pix).reshape(-1)
    first = np.concatenate([np.where(per_image < 0, -1, per_image + b * ih * iw) for b in range(n)])
    es = x.dtype.np.itemsize
    first_bytes = np.where(first < 0, NO_INPUT, first * ic * es)
    return AccessMap(first_bytes, oc * y.dtype.np.itemsize, reads_before_write=False)


def _first_valid(start: np.ndarray, k: int, dil: int, size: int) -> np.ndarray:
    """First in-range index of each window ``start + i*dil`` (i < k); -1 when the window is all padding."""
    i = np.where(start < 0, (-start + dil - 1) // dil, 0)
    pos = start + i * dil
    return np.where((i < k) & (pos < size), pos, -1)


def elementwise_access(op: Op, k: int) -> AccessMap | None:
    """Elementwise kernels (broadcasting included): unit = output element, reads its operands' elements first."""
    v = op.operands[k]
    if v.producer is not None and v.producer.kind == "const":
        return None
    y = op.results[0].type
    if len(v.type.shape) > len(y.shape):
        return None
    idx = np.arange(v.type.num_elements, dtype=np.int64).reshape(v.type.shape)
    first = np.broadcast_to(idx, y.shape).reshape(-1) * v.type.dtype.np.itemsize
    return AccessMap(first, y.dtype.np.itemsize, reads_before_write=True)
