"""The named pipelines behind ``-O0`` … ``-O3``, defined in this one place."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from compiler.errors import PipelineError

OPT_PIPELINES: dict[int, str] = {
    0: "",
    1: "canonicalize,fold-constants,dce",
    2: "canonicalize,fold-constants,dce,fuse-activation,fold-pad,canonicalize,dce,schedule-memory",
    3: "canonicalize,fold-constants,dce,fuse-activation,fold-pad,canonicalize,dce,schedule-memory,patch-stage",
}
"""Pipeline text for each optimisation level. -O0 only verifies; later levels add passes as they land."""


@dataclass(frozen=True)
class PatchOptions:
    """``--patches``, ``--patch-split`` and ``--patch-max-overhead``: None leaves the pass's default."""

    patches: int | None = None
    split: int | None = None
    max_overhead: float | None = None
    stream_input: bool = False

    def spec(self) -> str:
        """The ``patch-stage{...}`` pipeline element for these options."""
        opts = [f"{k.replace('_', '-')}={v}" for k, v in (("patches", self.patches), ("split", self.split),
                                                          ("max_overhead", self.max_overhead)) if v is not None]
        if self.stream_input:
            opts.append("stream-input=true")
        return "patch-stage" + ("{" + ",".join(opts) + "}" if opts else "")


def opt_pipeline(level: int, patch: PatchOptions | None = None) -> str:
    """The pipeline text of ``-O<level>``, with patch-based inference set by ``patch``: ``patches=1`` removes it,
    other options configure it (and add it at the end at levels that do not run it: after ``schedule-memory``,
    which would otherwise search the orders of the independent tiles)."""
    if level not in OPT_PIPELINES:
        raise PipelineError(f"unknown optimisation level -O{level}; use -O0, -O1, -O2 or -O3")
    passes = [p for p in OPT_PIPELINES[level].split(",") if p]
    if patch is None or patch == PatchOptions():
        return ",".join(passes)
    if patch.patches is not None and patch.patches < 0:
        raise PipelineError(f"--patches must be >= 0 (0: automatic, 1: per-layer), got {patch.patches}")
    if patch.split is not None and patch.split < 0:
        raise PipelineError(f"--patch-split must be >= 0, got {patch.split}")
    if patch.max_overhead is not None and patch.max_overhead < 0:
        raise PipelineError(f"--patch-max-overhead must be >= 0, got {patch.max_overhead}")
    if patch.patches == 1:
        if patch.stream_input:
            raise PipelineError("--stream-input needs patches (--patches 1 is per-layer inference)")
        return ",".join(p for p in passes if p != "patch-stage")
    if "patch-stage" in passes:
        return ",".join(patch.spec() if p == "patch-stage" else p for p in passes)
    return ",".join([*passes, patch.spec()])


def parse_overhead(text: str) -> float:
    """``--patch-max-overhead``: a fraction (``0.15``) or a percentage (``15%``)."""
    try:
        return float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise PipelineError(f"--patch-max-overhead takes a fraction or a percentage (0.15 or 15%), got {text!r}") \
            from None


def add_patch_arguments(parser: argparse.ArgumentParser, *, stream_input: bool = True) -> None:
    """The patch-based inference options shared by ``mcc MODEL``, ``mcc analyze`` and (without ``--stream-input``,
    which changes the generated API the emulator harness calls) ``mcc bench``."""
    g = parser.add_argument_group("patch-based inference (-O3 chooses automatically)")
    g.add_argument("--patches", type=int, metavar="P",
                   help="P x P tiles for the first layers (0: choose automatically, 1: per-layer inference)")
    g.add_argument("--patch-split", type=int, metavar="N", help="how many kernel ops the tiled stage holds "
                   "(default: the best for P)")
    g.add_argument("--patch-max-overhead", metavar="X", help="the most extra MACs the automatic choice accepts, "
                   "a fraction or a percentage (default 15%%)")
    if stream_input:
        g.add_argument("--stream-input", action="store_true", help="the patches read their input regions from "
                       "the application (its buffer or a callback) instead of a copy of the whole input in the arena")


def patch_options(args: argparse.Namespace) -> PatchOptions:
    """The :class:`PatchOptions` of parsed command-line arguments."""
    overhead = None if args.patch_max_overhead is None else parse_overhead(args.patch_max_overhead)
    return PatchOptions(args.patches, args.patch_split, overhead, getattr(args, "stream_input", False))
