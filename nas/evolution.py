"""Evolutionary search with the compiler as a hard constraint (MCUNet's TinyNAS, stage 2).

A population of subnets that fit is sampled; each generation keeps the ``parents`` best by fitness (the supernet's
validation accuracy) and fills the rest with mutants of random parents and crossovers of two random parents. Every
candidate is costed first (``mcc``'s peak SRAM, flash, optionally the latency estimate; cached per architecture)
and only those within the budgets are evaluated for fitness: the constraint is checked before accuracy.

Seeded and deterministic: generation ``g`` draws from ``random.Random(f"{seed}:{g}")``, so the result does not
depend on where a run was interrupted. :class:`EvolutionState` (population, caches, generation) round-trips through
JSON; :func:`evolve` calls ``on_generation`` after each generation, and passing the saved state back continues.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from compiler.errors import MccError
from nas.cost import Cost
from nas.space import Arch, Space


class NoFittingSubnetError(MccError):
    """The budgets reject every subnet the search tried."""


@dataclass(frozen=True)
class Constraint:
    """Hard budgets: peak SRAM and flash in bytes, and optionally estimated instructions per inference."""

    sram: int
    flash: int
    latency: float | None = None

    def admits(self, c: Cost) -> bool:
        """True when ``c`` is within every budget."""
        return c.fits(self.sram, self.flash) and (self.latency is None or c.latency_instructions <= self.latency)

    def describe(self) -> str:
        """``SRAM 65,536 B, flash 262,144 B`` (and the latency budget when set)."""
        lat = f", latency {self.latency:,.0f} instructions" if self.latency is not None else ""
        return f"SRAM {self.sram:,} B, flash {self.flash:,} B{lat}"


@dataclass(frozen=True)
class EvolutionConfig:
    """Population size, generations, how many parents survive, the mutant share of the children, the per-gene
    mutation probability and the seed."""

    population: int = 30
    generations: int = 5
    parents: int = 8
    mutation_ratio: float = 0.5
    mutate_prob: float = 0.1
    seed: int = 0
    max_tries: int = 200
    """Candidates tried (per wanted member) before giving up on finding one that fits."""

    def __post_init__(self) -> None:
        if self.population < 2 or not 1 <= self.parents < self.population or self.generations < 0:
            raise MccError("evolution needs population >= 2, 1 <= parents < population and generations >= 0")


@dataclass
class EvolutionState:
    """Where a search is: the next generation to run, the current population (architecture JSON), and every cost
    and fitness computed so far (keyed by architecture JSON)."""

    generation: int = 0
    population: list[str] = field(default_factory=list)
    costs: dict[str, dict[str, Any]] = field(default_factory=dict)
    fitness: dict[str, float] = field(default_factory=dict)
    best_per_generation: list[float] = field(default_factory=list)

    def cost(self, key: str) -> Cost:
        """The cached cost of one architecture."""
        return Cost(**self.costs[key])

    def ranked(self) -> list[str]:
        """The population, best fitness first (ties: the order of the population)."""
        return sorted(self.population, key=lambda k: -self.fitness[k])

    def best(self) -> tuple[Arch, float, Cost]:
        """The fittest architecture ever evaluated (all of them fit), with its fitness and cost."""
        if not self.fitness:
            raise MccError("no candidate has been evaluated yet")
        key = max(self.fitness, key=lambda k: (self.fitness[k], -self.costs[k]["peak_sram_bytes"]))
        return Arch.from_json(key), self.fitness[key], self.cost(key)

    def to_json(self) -> str:
        """The state as JSON."""
        return json.dumps(asdict(self))

    @staticmethod
    def from_json(text: str) -> EvolutionState:
        """Read :meth:`to_json`'s output."""
        return EvolutionState(**json.loads(text))


CostFn = Callable[[Sequence[Arch]], list[Cost]]
FitnessFn = Callable[[Sequence[Arch]], list[float]]


def _fill(state: EvolutionState, n: int, make: Callable[[random.Random], Arch], rng: random.Random,
          constraint: Constraint, cost_fn: CostFn, taken: set[str], max_tries: int) -> list[str]:
    """``n`` new distinct architectures from ``make`` that fit ``constraint`` (costing only uncached ones)."""
    out: list[str] = []
    tries = 0
    while len(out) < n:
        if tries >= max_tries * n:
            raise NoFittingSubnetError(f"found only {len(out)} of {n} subnets within {constraint.describe()} after "
                                       f"{tries} tries: raise the budgets or choose a smaller resolution or width")
        batch = [make(rng) for _ in range(n - len(out))]
        tries += len(batch)
        keys = [a.to_json() for a in batch]
        todo = list(dict.fromkeys(k for k in keys if k not in state.costs))
        for k, c in zip(todo, cost_fn([Arch.from_json(k) for k in todo]), strict=True):
            state.costs[k] = {f: getattr(c, f) for f in ("peak_sram_bytes", "flash_bytes", "macs",
                                                         "latency_instructions")}
        for k in keys:
            if k not in taken and constraint.admits(state.cost(k)) and len(out) < n:
                out.append(k)
                taken.add(k)
    return out


def _mutator(space: Space, parents: list[str], prob: float) -> Callable[[random.Random], Arch]:
    return lambda r: space.mutate(Arch.from_json(r.choice(parents)), r, prob)


def _crosser(space: Space, parents: list[str]) -> Callable[[random.Random], Arch]:
    def cross(r: random.Random) -> Arch:
        a, b = r.sample(parents, 2) if len(parents) > 1 else (parents[0], parents[0])
        return space.crossover(Arch.from_json(a), Arch.from_json(b), r)

    return cross


def _evaluate(state: EvolutionState, keys: list[str], fitness_fn: FitnessFn) -> None:
    todo = [k for k in keys if k not in state.fitness]
    for k, f in zip(todo, fitness_fn([Arch.from_json(k) for k in todo]), strict=True):
        state.fitness[k] = float(f)


def evolve(space: Space, constraint: Constraint, cost_fn: CostFn, fitness_fn: FitnessFn, config: EvolutionConfig,
           state: EvolutionState | None = None,
           on_generation: Callable[[EvolutionState], None] | None = None) -> EvolutionState:
    """Run (or continue, given ``state``) the search to ``config.generations`` generations after the initial
    population; returns the final state (:meth:`EvolutionState.best` is the answer)."""
    st = state if state is not None else EvolutionState()
    while st.generation <= config.generations:
        g = st.generation
        rng = random.Random(f"{config.seed}:{g}")
        if g == 0:
            st.population = _fill(st, config.population, space.sample, rng, constraint, cost_fn, set(),
                                  config.max_tries)
        else:
            parents = st.ranked()[:config.parents]
            taken = set(parents)
            n_mut = round((config.population - config.parents) * config.mutation_ratio)
            n_cross = config.population - config.parents - n_mut
            mutants = _fill(st, n_mut, _mutator(space, parents, config.mutate_prob), rng, constraint, cost_fn,
                            taken, config.max_tries)
            crossed = _fill(st, n_cross, _crosser(space, parents), rng, constraint, cost_fn, taken,
                            config.max_tries)
            st.population = parents + mutants + crossed
        _evaluate(st, st.population, fitness_fn)
        st.best_per_generation.append(max(st.fitness[k] for k in st.population))
        st.generation = g + 1
        if on_generation is not None:
            on_generation(st)
    return st
