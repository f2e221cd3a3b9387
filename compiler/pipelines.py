"""The named pipelines behind ``-O0`` … ``-O3``, defined in this one place."""

from __future__ import annotations

from compiler.errors import PipelineError

OPT_PIPELINES: dict[int, str] = {
    0: "",
    1: "canonicalize,fold-constants,dce",
    2: "canonicalize,fold-constants,dce,fuse-activation,fold-pad,canonicalize,dce,schedule-memory",
    3: "canonicalize,fold-constants,dce,fuse-activation,fold-pad,canonicalize,dce,schedule-memory",
}
"""Pipeline text for each optimisation level. -O0 only verifies; later levels add passes as they land."""


def opt_pipeline(level: int) -> str:
    """The pipeline text of ``-O<level>``."""
    if level not in OPT_PIPELINES:
        raise PipelineError(f"unknown optimisation level -O{level}; use -O0, -O1, -O2 or -O3")
    return OPT_PIPELINES[level]
