"""The baseline TinyNAS is compared with: MobileNetV2 (Sandler et al. 2018) scaled down until mcc fits it.

:func:`mobilenet_v2` is the paper's network (stem 32/2; t=1 block of 16; stages of (t=6, k=3) blocks with widths
24, 32, 64, 96, 160, 320, depths 2, 3, 4, 3, 3, 1 and first strides 2, 2, 2, 1, 2, 1; head 1280) as an
:class:`~nas.space.Arch`, with a width multiplier and resolution. :func:`scale_to_fit` applies MobileNet's own
scaling rule under a budget: the widest, then the highest-resolution network of a grid that mcc fits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from compiler.errors import MccError
from nas.cost import Cost
from nas.evolution import Constraint
from nas.space import Arch, BlockArch, StageArch

MBV2_STAGES = ((24, 2, 2), (32, 2, 3), (64, 2, 4), (96, 1, 3), (160, 2, 3), (320, 1, 1))
"""(width, first stride, depth) of MobileNetV2's inverted-residual stages after the first block."""
BASELINE_RESOLUTIONS = (28, 32, 40, 48, 56, 64)
BASELINE_WIDTHS = (0.1, 0.15, 0.2, 0.25, 0.35, 0.5, 0.75)


def mobilenet_v2(in_channels: int, num_classes: int, resolution: int, width_mult: float) -> Arch:
    """MobileNetV2 at ``resolution`` with ``width_mult`` (channels rounded to multiples of 8, as the paper)."""
    blk = BlockArch(3, 6)
    stages = tuple(StageArch(w, s, (blk,) * d) for w, s, d in MBV2_STAGES)
    arch = Arch(in_channels, num_classes, resolution, width_mult, 32, 2, 16, 1280, stages)
    arch.validate()
    return arch


@dataclass(frozen=True)
class ScaledBaseline:
    """The chosen scaled MobileNetV2, its cost, and every grid point tried (r, w, cost, fits)."""

    arch: Arch
    cost: Cost
    tried: tuple[tuple[int, float, Cost, bool], ...]


def scale_to_fit(in_channels: int, num_classes: int, constraint: Constraint,
                 cost_fn: Callable[[Sequence[Arch]], list[Cost]],
                 resolutions: Sequence[int] = BASELINE_RESOLUTIONS,
                 widths: Sequence[float] = BASELINE_WIDTHS) -> ScaledBaseline:
    """MobileNetV2 scaled down to ``constraint``: the widest multiplier of the grid that fits at the smallest
    resolution (flash depends on the width only), then the highest resolution that still fits at that width
    (memory grows with resolution; the walk stops at the first that does not fit)."""
    tried = []

    def tryit(r: int, w: float) -> bool:
        c = cost_fn([mobilenet_v2(in_channels, num_classes, r, w)])[0]
        ok = constraint.admits(c)
        tried.append((r, w, c, ok))
        return ok

    rs = sorted(resolutions)
    width = next((w for w in sorted(widths, reverse=True) if tryit(rs[0], w)), None)
    if width is None:
        raise MccError(f"no scaled MobileNetV2 of the grid fits {constraint.describe()}")
    for r in rs[1:]:
        if not tryit(r, width):
            break
    r, w, c, _ = [t for t in tried if t[3]][-1]
    return ScaledBaseline(mobilenet_v2(in_channels, num_classes, r, w), c, tuple(tried))
