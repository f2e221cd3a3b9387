"""Acceptance: the cost model's peak SRAM and flash equal mcc's report.json, exactly, for 50 random subnets."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest

from compiler.driver import compile_model
from compiler.printer import print_graph
from nas.build import to_graph
from nas.cost import cost
from nas.space import small_space

# Small enough that 50 compilations stay within the suite's time budget; every gene still varies.
SPACE = replace(small_space(resolutions=(16, 20, 24), width_mults=(0.25, 0.35)), depths=(1, 2))
N = 50


def _archs() -> list:
    rng = random.Random(2024)
    return [SPACE.sample(rng) for _ in range(N)]


@pytest.mark.parametrize("chunk", range(5))
def test_cost_equals_mcc_report(tmp_path: Path, chunk: int) -> None:
    """The arch's IR printed as .mir and compiled by ``compile_model`` (``mcc FILE.mir -O L``) reports exactly what
    ``cost(arch)`` says; the first subnet of two chunks at -O3 (patch-stage's automatic search), the rest at -O2."""
    archs = _archs()[chunk * 10:(chunk + 1) * 10]
    for i, arch in enumerate(archs):
        level = 3 if i == 0 and chunk in (0, 3) else 2
        mir = tmp_path / f"net{i}.mir"
        mir.write_text(print_graph(to_graph(arch)))
        report = compile_model(mir, tmp_path / f"c{i}", opt_level=level, target="cortex-m7")
        c = cost(arch, target="cortex-m7", opt_level=level)
        got = (c.peak_sram_bytes, c.flash_bytes, c.macs)
        want = (report["peak_sram_bytes"], report["flash_bytes"], report["macs"])
        assert got == want, f"{arch.describe()} at -O{level}: cost {got} != report {want}"
        assert c.patch_stage == report["patch_stage"]
