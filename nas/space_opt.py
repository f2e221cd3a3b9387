"""MCUNet's stage 1, search-space optimisation: which (resolution, width) space to search in.

For every (r, w) of a grid, sample N subnets of the space at that r and w, cost each with the compiler
(:func:`nas.cost.cost`), keep those that fit the SRAM and flash budgets, and pick the space whose satisfying subnets
have the highest mean MACs (MCUNet's heuristic: under the same memory constraint, more computation means a more
accurate network). The FLOPs CDF of each space's satisfying subnets is the figure MCUNet plots.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from compiler.errors import MccError
from compiler.pipelines import PatchOptions
from nas.cost import Cost, cost_many
from nas.space import Space


@dataclass(frozen=True)
class SpaceResult:
    """One (r, w) space: how many of its samples fit and the MACs of those that do."""

    resolution: int
    width_mult: float
    samples: int
    satisfying_macs: tuple[int, ...]

    @property
    def fraction(self) -> float:
        """Share of the samples that fit both budgets."""
        return len(self.satisfying_macs) / self.samples if self.samples else 0.0

    @property
    def mean_macs(self) -> float:
        """Mean MACs of the satisfying samples (0 when none fits)."""
        m = self.satisfying_macs
        return sum(m) / len(m) if m else 0.0


@dataclass(frozen=True)
class SpaceOptResult:
    """Every space of the grid, the chosen one and how long it took."""

    results: tuple[SpaceResult, ...]
    best: SpaceResult | None
    seconds: float
    evaluations: int

    @property
    def rate(self) -> float:
        """Cost-model evaluations per second."""
        return self.evaluations / self.seconds if self.seconds else 0.0


def optimise_space(space: Space, resolutions: Sequence[int], width_mults: Sequence[float], *, sram: int,
                   flash: int, samples: int, target: str = "cortex-m7", opt_level: int = 3,
                   patch: PatchOptions | None = None, seed: int = 0, jobs: int = 1,
                   progress: Callable[[SpaceResult], None] | None = None) -> SpaceOptResult:
    """Sample ``samples`` subnets of ``space`` at each (r, w) and choose the space as MCUNet does."""
    if samples < 1:
        raise MccError(f"--samples must be >= 1, got {samples}")
    if not resolutions or not width_mults:
        raise MccError("the grid needs at least one resolution and one width multiplier")
    start = time.perf_counter()
    results = []
    for r in resolutions:
        for w in width_mults:
            sub = space.at(r, w)
            rng = random.Random(f"{seed}:{r}:{w}")
            archs = [sub.sample(rng) for _ in range(samples)]
            costs: list[Cost] = cost_many(archs, target, opt_level, patch, jobs=jobs)
            res = SpaceResult(r, w, samples, tuple(c.macs for c in costs if c.fits(sram, flash)))
            results.append(res)
            if progress is not None:
                progress(res)
    fitting = [r for r in results if r.satisfying_macs]
    best = max(fitting, key=lambda r: r.mean_macs) if fitting else None
    return SpaceOptResult(tuple(results), best, time.perf_counter() - start, samples * len(results))


def format_table(res: SpaceOptResult) -> str:
    """The grid as text: r, w, fraction satisfying, mean MACs of the satisfying subnets; the chosen space marked."""
    lines = [f"{'r':>4}  {'w':>5}  {'satisfying':>10}  {'mean MACs (satisfying)':>22}", "-" * 47]
    for r in res.results:
        mark = "  <- chosen" if r is res.best else ""
        macs = f"{r.mean_macs / 1e6:,.2f} M" if r.satisfying_macs else "-"
        lines.append(f"{r.resolution:>4}  {r.width_mult:>5g}  {100 * r.fraction:>9.1f}%  {macs:>22}{mark}")
    return "\n".join(lines) + "\n"


def plot_cdf(res: SpaceOptResult, out: str, title: str = "") -> None:
    """One CDF curve of MACs per space over its satisfying subnets (MCUNet's Figure 3), as a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MccError("--plot needs matplotlib, which is not installed (pip install matplotlib)") from None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in res.results:
        if not r.satisfying_macs:
            continue
        xs = sorted(m / 1e6 for m in r.satisfying_macs)
        ys = [(i + 1) / len(xs) for i in range(len(xs))]
        best = r is res.best
        ax.step(xs, ys, where="post", linewidth=2.5 if best else 1.0,
                label=f"r={r.resolution} w={r.width_mult:g} ({100 * r.fraction:.0f}% fit)" + (" *" if best else ""))
    ax.set_xlabel("MACs of satisfying subnets (M)")
    ax.set_ylabel("cumulative probability")
    ax.set_title(title or "FLOPs distribution of the subnets that fit, per search space", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    try:
        fig.savefig(out)
    except OSError as e:
        raise MccError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        plt.close(fig)
