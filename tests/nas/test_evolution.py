"""Evolutionary search: budgets as hard constraints, determinism, resume, and the scaled MobileNetV2."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

import pytest

from compiler.errors import MccError
from nas.baseline import mobilenet_v2, scale_to_fit
from nas.cost import Cost, cost_many
from nas.evolution import Constraint, EvolutionConfig, EvolutionState, NoFittingSubnetError, evolve
from nas.space import Arch, small_space

SPACE = replace(small_space(), se=(False,), hswish=(False,)).at(28, 0.5)


def fake_cost(archs: Sequence[Arch]) -> list[Cost]:
    """A cheap stand-in with the shape of the real one: SRAM from the widest expansion, flash from the blocks."""
    out = []
    for a in archs:
        blocks = list(a.blocks())
        sram = max(b.mid * 14 * 14 for b in blocks)
        flash = sum(b.c_in * b.mid + b.mid * b.kernel ** 2 + b.mid * b.c_out for b in blocks)
        macs = sum((b.c_in * b.mid + b.mid * b.kernel ** 2 + b.mid * b.c_out) * 49 for b in blocks)
        out.append(Cost(sram, flash, macs, 4.0 * macs))
    return out


def fake_fitness(archs: Sequence[Arch]) -> list[float]:
    """Accuracy-like: grows with MACs, plus a deterministic per-architecture wobble."""
    return [min(0.99, c.macs / 3e7) + random.Random(a.to_json()).random() * 0.01
            for a, c in zip(archs, fake_cost(archs), strict=True)]


LIMIT = Constraint(sram=48 * 14 * 14 * 3, flash=60_000)
CONFIG = EvolutionConfig(population=10, generations=3, parents=3, seed=7)


def test_every_evaluated_candidate_fits_and_fitness_never_sees_others() -> None:
    seen: list[Arch] = []

    def fitness(archs: Sequence[Arch]) -> list[float]:
        seen.extend(archs)
        return fake_fitness(archs)

    st = evolve(SPACE, LIMIT, fake_cost, fitness, CONFIG)
    assert seen and all(LIMIT.admits(c) for c in fake_cost(seen))
    # the constraint rejected some (it binds), and each generation's population is full and distinct
    assert any(not LIMIT.admits(Cost(**c)) for c in st.costs.values())
    assert len(st.population) == len(set(st.population)) == CONFIG.population
    assert st.generation == CONFIG.generations + 1 and len(st.best_per_generation) == CONFIG.generations + 1
    # elitism: the best fitness never drops
    assert st.best_per_generation == sorted(st.best_per_generation)
    arch, fit, c = st.best()
    assert LIMIT.admits(c) and SPACE.contains(arch) and fit == max(st.fitness.values())


def test_seeded_and_deterministic() -> None:
    a = evolve(SPACE, LIMIT, fake_cost, fake_fitness, CONFIG)
    b = evolve(SPACE, LIMIT, fake_cost, fake_fitness, CONFIG)
    c = evolve(SPACE, LIMIT, fake_cost, fake_fitness, replace(CONFIG, seed=8))
    assert a.to_json() == b.to_json()
    assert a.population != c.population


def test_resume_from_a_saved_state_equals_an_uninterrupted_run() -> None:
    whole = evolve(SPACE, LIMIT, fake_cost, fake_fitness, CONFIG)
    saved: list[str] = []

    class StopError(Exception):
        pass

    def save_then_die(st: EvolutionState) -> None:
        saved.append(st.to_json())
        if st.generation == 2:
            raise StopError

    with pytest.raises(StopError):
        evolve(SPACE, LIMIT, fake_cost, fake_fitness, CONFIG, on_generation=save_then_die)
    resumed = evolve(SPACE, LIMIT, fake_cost, fake_fitness, CONFIG, EvolutionState.from_json(saved[-1]))
    assert resumed.to_json() == whole.to_json()


def test_impossible_budget_is_one_clear_error() -> None:
    with pytest.raises(NoFittingSubnetError, match="raise the budgets"):
        evolve(SPACE, Constraint(100, 100), fake_cost, fake_fitness, replace(CONFIG, max_tries=3))


def test_latency_budget_is_a_constraint_too() -> None:
    rng = random.Random(0)
    fitting = sorted(c.latency_instructions for c in fake_cost([SPACE.sample(rng) for _ in range(300)])
                     if LIMIT.admits(c))
    lat = Constraint(LIMIT.sram, LIMIT.flash, latency=fitting[len(fitting) // 2])  # rejects half the fitting ones
    st = evolve(SPACE, lat, fake_cost, fake_fitness, replace(CONFIG, generations=1))
    assert all(st.cost(k).latency_instructions <= lat.latency for k in st.fitness)


def test_with_the_real_cost_model() -> None:
    """The compiler itself as the constraint (-O1, a tiny resolution so it stays fast)."""
    space = replace(SPACE, depths=(1, 2)).at(16, 0.25)
    costs = cost_many([space.largest()], opt_level=1)
    budget = Constraint(costs[0].peak_sram_bytes - 1, costs[0].flash_bytes)  # the largest does not fit

    def cost_fn(archs: Sequence[Arch]) -> list[Cost]:
        return cost_many(archs, opt_level=1)

    st = evolve(space, budget, cost_fn, fake_fitness, EvolutionConfig(population=4, generations=1, parents=2))
    arch, _, c = st.best()
    assert budget.admits(c) and cost_fn([arch])[0] == c


def test_scaled_mobilenet_v2_fits_and_is_the_widest_then_highest() -> None:
    budget = Constraint(sram=20_000, flash=60_000)
    sb = scale_to_fit(1, 10, budget, fake_cost, resolutions=(28, 32, 40), widths=(0.1, 0.25, 0.5))
    assert budget.admits(sb.cost)
    widths_tried = [w for _, w, _, _ in sb.tried]
    assert sb.arch.width_mult == max(w for _, w, _, ok in sb.tried if ok)
    assert widths_tried[0] == 0.5  # widest first
    a = mobilenet_v2(1, 10, 32, 1.0)
    assert a.depths == (2, 3, 4, 3, 3, 1) and all(b.kernel == 3 and b.expand == 6 for s in a.stages for b in s.blocks)
    with pytest.raises(MccError, match="no scaled MobileNetV2"):
        scale_to_fit(1, 10, Constraint(10, 10), fake_cost, resolutions=(28,), widths=(0.1,))


def test_local_executor_maps_in_order_in_processes() -> None:
    import math

    from nas.executor import LocalExecutor, make_executor

    ex = LocalExecutor(2)
    try:
        assert ex.map(math.sqrt, [1.0, 4.0, 9.0, 16.0]) == [1.0, 2.0, 3.0, 4.0]
        assert ex._pool is not None  # really used processes
    finally:
        ex.close()
    assert make_executor("local").map(abs, [-1, 2]) == [1, 2]
    with pytest.raises(MccError, match="unknown executor"):
        make_executor("slurm")


def test_ray_executor_maps_in_order() -> None:
    """With Ray installed (not in CI: an optional extra), candidates go out as Ray tasks and come back in order."""
    ray = pytest.importorskip("ray")
    import math

    from nas.executor import make_executor

    ex = make_executor("ray")
    try:
        assert ex.map(math.sqrt, [1.0, 4.0, 9.0, 16.0]) == [1.0, 2.0, 3.0, 4.0]
        assert ray.is_initialized()
    finally:
        ex.close()
        ray.shutdown()
