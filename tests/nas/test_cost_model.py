"""CostModel: the exact cost memoised by architecture, and the estimate from memoised pieces."""

from __future__ import annotations

import random
from dataclasses import replace

from nas.cost import CostModel, Estimate, cost, estimate_many
from nas.space import small_space

SPACE = replace(small_space(resolutions=(16, 24), width_mults=(0.25, 0.35)), depths=(1, 2))


def _archs(n: int, seed: int = 7) -> list:
    rng = random.Random(seed)
    return [SPACE.sample(rng) for _ in range(n)]


def test_estimate_macs_equal_the_compiled_graphs() -> None:
    """MACs add up over the pieces: the estimate's MACs are the compiled network's, exactly."""
    model = CostModel(opt_level=2)
    for arch in _archs(4):
        assert model.estimate(arch).macs == cost(arch, opt_level=2).macs, arch.describe()


def test_estimate_is_marked_and_cached() -> None:
    """An estimate says it is one; the second estimate of an architecture compiles nothing new and is equal."""
    model = CostModel(opt_level=2)
    a, b = _archs(2, seed=11)
    first = model.estimate(a)
    assert isinstance(first, Estimate) and first.exact is False
    pieces = model.pieces
    assert pieces > 0
    assert model.estimate(a) == first
    assert model.pieces == pieces
    model.estimate(b)
    assert model.pieces >= pieces
    # a subnet differing from a only in its last stage's blocks reuses the stem's and the first stages' pieces
    c = replace(a, stages=(*a.stages[:-1], replace(a.stages[-1], se=not a.stages[-1].se)))
    before = model.pieces
    model.estimate(c)
    assert 0 < model.pieces - before <= a.stages[-1].depth + 1


def test_exact_cost_is_memoised_by_architecture() -> None:
    """CostModel.cost compiles an architecture once and returns what cost() returns."""
    model = CostModel(opt_level=2)
    (a,) = _archs(1, seed=3)
    got = model.cost(a)
    assert (model.exact_misses, model.exact_hits) == (1, 0)
    again = model.cost(a)
    assert again is got and (model.exact_misses, model.exact_hits) == (1, 1)
    want = cost(a, opt_level=2)
    assert (got.peak_sram_bytes, got.flash_bytes, got.macs) == (want.peak_sram_bytes, want.flash_bytes, want.macs)


def test_estimate_many_over_processes_equals_one_process() -> None:
    """Forked workers give the estimates one process gives, in order."""
    model = CostModel(opt_level=2)
    archs = _archs(5, seed=5)
    assert estimate_many(model, archs, jobs=2) == estimate_many(model, archs, jobs=1)
