"""The search space: MobileNetV2/MnasNet-style networks of inverted-residual blocks, as MCUNet's TinyNAS uses.

A network (:class:`Arch`) is a stem convolution, a depthwise-separable block, stages of inverted-residual blocks
(MBConv: 1x1 expansion, k x k depthwise, optional squeeze-and-excitation, 1x1 linear projection, a residual add
when the shape allows) and a head (1x1 convolution, global average pooling, fully connected to the classes).
Each stage chooses its depth; each block its kernel size and expansion ratio; each stage whether it uses hard-swish
and SE. A global width multiplier ``w`` scales every channel count (rounded to multiples of 8) and the input
resolution ``r`` sets the image size.

A :class:`Space` holds the skeleton (stage widths and strides) and the choices; it samples architectures uniformly
with a seeded RNG and mutates and crosses them over (for the evolutionary search). :class:`Arch` is self-contained
(skeleton included) and round-trips through JSON, so a result file can be compiled without the space that made it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from compiler.errors import MccError


class SpaceError(MccError):
    """An architecture or space description that is not valid."""


def make_divisible(v: float, divisor: int = 8) -> int:
    """MobileNetV2's channel rounding: the nearest multiple of ``divisor`` (at least ``divisor``), never more than
    10% below ``v``."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new < 0.9 * v:
        new += divisor
    return new


@dataclass(frozen=True)
class BlockArch:
    """One inverted-residual block's choices."""

    kernel: int
    expand: int


@dataclass(frozen=True)
class StageArch:
    """One stage: base output width (before the multiplier), the stride of its first block, its blocks (as many as
    its depth), and whether its blocks use hard-swish (else ReLU6) and squeeze-and-excitation."""

    width: int
    stride: int
    blocks: tuple[BlockArch, ...]
    se: bool = False
    hswish: bool = False

    @property
    def depth(self) -> int:
        """Number of blocks."""
        return len(self.blocks)


@dataclass(frozen=True)
class Arch:
    """A complete network: skeleton, resolution, width multiplier and every block's choices."""

    in_channels: int
    num_classes: int
    resolution: int
    width_mult: float
    stem_width: int
    stem_stride: int
    first_width: int
    head_width: int
    stages: tuple[StageArch, ...]

    def channels(self, base: int) -> int:
        """A base width scaled by the multiplier and rounded to a multiple of 8."""
        return make_divisible(base * self.width_mult)

    def blocks(self) -> Iterator[MBConv]:
        """Every inverted-residual block in order (the depthwise-separable block after the stem first), with
        resolved channel counts."""
        c_in = self.channels(self.stem_width)
        c_first = self.channels(self.first_width)
        yield MBConv("b0", c_in, c_in, c_first, 3, 1, False, False)
        c_in = c_first
        for s, st in enumerate(self.stages, 1):
            c_out = self.channels(st.width)
            for b, blk in enumerate(st.blocks):
                yield MBConv(f"s{s}b{b}", c_in, c_in * blk.expand, c_out, blk.kernel, st.stride if b == 0 else 1,
                             st.se, st.hswish)
                c_in = c_out

    @property
    def last_channels(self) -> int:
        """Channels entering the head."""
        return self.channels(self.stages[-1].width) if self.stages else self.channels(self.first_width)

    @property
    def head_channels(self) -> int:
        """Channels of the head's 1x1 convolution (scaled like the rest, never below the last stage's)."""
        return max(self.channels(self.head_width), self.last_channels)

    @property
    def depths(self) -> tuple[int, ...]:
        """Blocks per stage."""
        return tuple(s.depth for s in self.stages)

    def validate(self) -> None:
        """Raise :class:`SpaceError` unless every field is usable."""
        if self.in_channels < 1 or self.num_classes < 1:
            raise SpaceError("in_channels and num_classes must be >= 1")
        if self.resolution < 8:
            raise SpaceError(f"resolution must be >= 8, got {self.resolution}")
        if not 0 < self.width_mult <= 4:
            raise SpaceError(f"width multiplier must be in (0, 4], got {self.width_mult}")
        if self.stem_stride not in (1, 2):
            raise SpaceError(f"stem stride must be 1 or 2, got {self.stem_stride}")
        for st in self.stages:
            if st.stride not in (1, 2) or st.width < 1 or not st.blocks:
                raise SpaceError(f"bad stage {st}")
            for b in st.blocks:
                if b.kernel not in (1, 3, 5, 7) or b.expand < 1:
                    raise SpaceError(f"bad block {b}")

    # -- JSON --------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists and numbers) for JSON."""
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Arch:
        """The inverse of :meth:`to_dict`; raises :class:`SpaceError` on missing or malformed fields."""
        try:
            stages = tuple(StageArch(int(s["width"]), int(s["stride"]),
                                     tuple(BlockArch(int(b["kernel"]), int(b["expand"])) for b in s["blocks"]),
                                     bool(s.get("se", False)), bool(s.get("hswish", False)))
                           for s in d["stages"])
            arch = Arch(int(d["in_channels"]), int(d["num_classes"]), int(d["resolution"]), float(d["width_mult"]),
                        int(d["stem_width"]), int(d["stem_stride"]), int(d["first_width"]), int(d["head_width"]),
                        stages)
        except (KeyError, TypeError, ValueError) as e:
            raise SpaceError(f"not an architecture description: {e!r}") from None
        arch.validate()
        return arch

    def to_json(self) -> str:
        """One line of JSON."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @staticmethod
    def from_json(text: str) -> Arch:
        """Parse :meth:`to_json`'s output."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise SpaceError(f"not JSON: {e}") from None
        if not isinstance(data, dict):
            raise SpaceError("an architecture is a JSON object")
        return Arch.from_dict(data)

    def describe(self) -> str:
        """A compact one-line summary: ``r96 w0.5 | k3e4 k5e6 | …``."""
        parts = [f"r{self.resolution} w{self.width_mult:g}"]
        for st in self.stages:
            tag = ("+se" if st.se else "") + ("+hs" if st.hswish else "")
            parts.append(" ".join(f"k{b.kernel}e{b.expand}" for b in st.blocks) + tag)
        return " | ".join(parts)


@dataclass(frozen=True)
class MBConv:
    """An inverted-residual block with resolved channels: expand 1x1 (skipped when ``mid == c_in``), depthwise
    ``kernel`` x ``kernel`` with ``stride``, optional SE, linear 1x1 projection, residual add when
    ``stride == 1`` and ``c_in == c_out``."""

    name: str
    c_in: int
    mid: int
    c_out: int
    kernel: int
    stride: int
    se: bool
    hswish: bool

    @property
    def has_expand(self) -> bool:
        """True when the block has a 1x1 expansion convolution."""
        return self.mid != self.c_in

    @property
    def residual(self) -> bool:
        """True when the block adds its input to its output."""
        return self.stride == 1 and self.c_in == self.c_out

    @property
    def se_channels(self) -> int:
        """Channels of the SE bottleneck: a quarter of ``mid``, rounded to 8."""
        return make_divisible(self.mid / 4)


@dataclass(frozen=True)
class StageSpec:
    """A stage of the skeleton: base output width and the stride of its first block."""

    width: int
    stride: int


@dataclass(frozen=True)
class Space:
    """A search space: the skeleton plus the choices for every gene. ``resolutions`` and ``width_mults`` with one
    value each make one of MCUNet's stage-1 spaces (:meth:`at`)."""

    name: str
    in_channels: int
    num_classes: int
    stem_width: int
    stem_stride: int
    first_width: int
    stages: tuple[StageSpec, ...]
    head_width: int
    resolutions: tuple[int, ...]
    width_mults: tuple[float, ...]
    kernels: tuple[int, ...] = (3, 5, 7)
    expands: tuple[int, ...] = (3, 4, 6)
    depths: tuple[int, ...] = (2, 3, 4)
    se: tuple[bool, ...] = (False, True)
    hswish: tuple[bool, ...] = (False, True)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for what, vals in (("resolutions", self.resolutions), ("width_mults", self.width_mults),
                           ("kernels", self.kernels), ("expands", self.expands), ("depths", self.depths),
                           ("se", self.se), ("hswish", self.hswish)):
            if not vals:
                raise SpaceError(f"space {self.name}: no choices for {what}")
        if min(self.depths) < 1 or any(k not in (1, 3, 5, 7) for k in self.kernels) or min(self.expands) < 1:
            raise SpaceError(f"space {self.name}: depths and expansions must be >= 1, kernels in 1, 3, 5, 7")
        if min(self.resolutions) < 8 or not all(0 < w <= 4 for w in self.width_mults):
            raise SpaceError(f"space {self.name}: resolutions must be >= 8 and width multipliers in (0, 4]")

    def at(self, resolution: int, width_mult: float) -> Space:
        """The sub-space with this one resolution and width multiplier."""
        return replace(self, resolutions=(resolution,), width_mults=(width_mult,))

    # -- sampling ----------------------------------------------------------------------------------------------
    def _stage(self, spec: StageSpec, rng: random.Random) -> StageArch:
        depth = rng.choice(self.depths)
        blocks = tuple(BlockArch(rng.choice(self.kernels), rng.choice(self.expands)) for _ in range(depth))
        return StageArch(spec.width, spec.stride, blocks, rng.choice(self.se), rng.choice(self.hswish))

    def sample(self, rng: random.Random) -> Arch:
        """An architecture drawn uniformly: each gene independently from its choices."""
        r, w = rng.choice(self.resolutions), rng.choice(self.width_mults)
        stages = tuple(self._stage(s, rng) for s in self.stages)
        return Arch(self.in_channels, self.num_classes, r, w, self.stem_width, self.stem_stride, self.first_width,
                    self.head_width, stages)

    def contains(self, arch: Arch) -> bool:
        """True when every gene of ``arch`` is one of this space's choices on this space's skeleton."""
        if (arch.in_channels, arch.num_classes, arch.stem_width, arch.stem_stride, arch.first_width,
                arch.head_width) != (self.in_channels, self.num_classes, self.stem_width, self.stem_stride,
                                     self.first_width, self.head_width):
            return False
        if arch.resolution not in self.resolutions or arch.width_mult not in self.width_mults:
            return False
        if len(arch.stages) != len(self.stages):
            return False
        for st, spec in zip(arch.stages, self.stages, strict=True):
            if (st.width, st.stride) != (spec.width, spec.stride) or st.depth not in self.depths:
                return False
            if st.se not in self.se or st.hswish not in self.hswish:
                return False
            if any(b.kernel not in self.kernels or b.expand not in self.expands for b in st.blocks):
                return False
        return True

    def mutate(self, arch: Arch, rng: random.Random, prob: float = 0.1) -> Arch:
        """Resample each gene with probability ``prob`` (resolution, width, each stage's depth, SE and activation,
        each block's kernel and expansion); a deeper stage gets freshly sampled blocks at its end."""
        r = rng.choice(self.resolutions) if rng.random() < prob else arch.resolution
        w = rng.choice(self.width_mults) if rng.random() < prob else arch.width_mult
        stages = []
        for st in arch.stages:
            blocks = [BlockArch(rng.choice(self.kernels) if rng.random() < prob else b.kernel,
                                rng.choice(self.expands) if rng.random() < prob else b.expand) for b in st.blocks]
            if rng.random() < prob:
                depth = rng.choice(self.depths)
                blocks = blocks[:depth] + [BlockArch(rng.choice(self.kernels), rng.choice(self.expands))
                                           for _ in range(depth - len(blocks))]
            se = rng.choice(self.se) if rng.random() < prob else st.se
            hs = rng.choice(self.hswish) if rng.random() < prob else st.hswish
            stages.append(replace(st, blocks=tuple(blocks), se=se, hswish=hs))
        return replace(arch, resolution=r, width_mult=w, stages=tuple(stages))

    def crossover(self, a: Arch, b: Arch, rng: random.Random) -> Arch:
        """Uniform crossover: every gene from either parent with equal chance (a stage's depth too; a block the
        chosen depth needs beyond the other parent's comes from the parent that has it)."""
        if len(a.stages) != len(b.stages):
            raise SpaceError("crossover needs two architectures of the same space")
        stages = []
        for sa, sb in zip(a.stages, b.stages, strict=True):
            depth = rng.choice((sa.depth, sb.depth))
            blocks = []
            for i in range(depth):
                have = [s.blocks[i] for s in (sa, sb) if i < s.depth]
                blocks.append(BlockArch(rng.choice(have).kernel, rng.choice(have).expand))
            stages.append(replace(sa, blocks=tuple(blocks), se=rng.choice((sa.se, sb.se)),
                                  hswish=rng.choice((sa.hswish, sb.hswish))))
        return replace(a, resolution=rng.choice((a.resolution, b.resolution)),
                       width_mult=rng.choice((a.width_mult, b.width_mult)), stages=tuple(stages))

    def largest(self, resolution: int | None = None, width_mult: float | None = None) -> Arch:
        """The biggest member (deepest, widest kernels and expansions, SE and hard-swish where allowed)."""
        r = resolution if resolution is not None else max(self.resolutions)
        w = width_mult if width_mult is not None else max(self.width_mults)
        blk = BlockArch(max(self.kernels), max(self.expands))
        stages = tuple(StageArch(s.width, s.stride, (blk,) * max(self.depths), max(self.se), max(self.hswish))
                       for s in self.stages)
        return Arch(self.in_channels, self.num_classes, r, w, self.stem_width, self.stem_stride, self.first_width,
                    self.head_width, stages)


def mobile_space(in_channels: int = 3, num_classes: int = 1000,
                 resolutions: Sequence[int] = (48, 64, 80, 96, 112, 128),
                 width_mults: Sequence[float] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)) -> Space:
    """MCUNet's ImageNet-style skeleton (MobileNetV2 widths and strides, total stride 32) for RGB-like inputs of
    48..176 pixels: stem 32/2, first block 16, stages 24/2, 40/2, 80/2, 96/1, 192/2, 320/1, head 640."""
    return Space("mobile", in_channels, num_classes, 32, 2, 16,
                 (StageSpec(24, 2), StageSpec(40, 2), StageSpec(80, 2), StageSpec(96, 1), StageSpec(192, 2),
                  StageSpec(320, 1)), 640, tuple(resolutions), tuple(width_mults))


def small_space(in_channels: int = 1, num_classes: int = 10,
                resolutions: Sequence[int] = (28, 32, 40, 48),
                width_mults: Sequence[float] = (0.25, 0.35, 0.5, 0.75, 1.0)) -> Space:
    """A skeleton for small images (Fashion-MNIST's 28x28, resized to ``r``), total stride 8: stem 16/1, first
    block 8, stages 16/2, 24/2, 40/2, 48/1, head 256."""
    return Space("small", in_channels, num_classes, 16, 1, 8,
                 (StageSpec(16, 2), StageSpec(24, 2), StageSpec(40, 2), StageSpec(48, 1)), 256,
                 tuple(resolutions), tuple(width_mults))


SPACES = {"mobile": mobile_space, "small": small_space}
"""Named skeletons (``mcc-nas space --space NAME``)."""
