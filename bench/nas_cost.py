"""Speed and accuracy of the NAS cost model: exact evaluations (nas.cost.cost, the compiler) and estimates
(CostModel.estimate, memoised pieces) per second on MCUNet-sized subnets, and the estimates' error against the exact
figures. ``python bench/nas_cost.py [--n 60] [--rate-n 2000] [--exact-n 8] [--o3-n 4] [--profile]``."""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from compiler.pipelines import PatchOptions  # noqa: E402
from nas.build import to_graph  # noqa: E402
from nas.cost import CostModel, cost, cost_many, estimate_many  # noqa: E402
from nas.space import Space, mobile_space  # noqa: E402

RESOLUTIONS = (128, 144, 160, 176)
WIDTHS = (0.5, 0.75, 1.0)
BUDGETS = ((256 * 1024, 2 * 1024 * 1024), (320 * 1024, 4 * 1024 * 1024), (512 * 1024, 8 * 1024 * 1024))
"""(SRAM, flash) budgets for the fits / does-not-fit comparison."""


def mcunet_space() -> Space:
    """The mobile space at MCUNet's resolutions and widths (17-25 MBConv blocks, 100-190 kernel ops)."""
    return replace(mobile_space(), resolutions=RESOLUTIONS, width_mults=WIDTHS)


def _rate(label: str, n: int, fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    dt = time.perf_counter() - start
    print(f"  {label:44s} {n / dt:9.2f} evaluations/s ({1000 * dt / n:8.2f} ms each, {n} subnets)", flush=True)
    return n / dt


def exact_rates(archs: list, exact_n: int, o3_n: int) -> None:
    """Evaluations per second of the exact cost model."""
    print(f"exact (nas.cost.cost = the compiler), mobile space r {RESOLUTIONS} w {WIDTHS}:")
    for label, level, patch, n in (("-O2", 2, None, exact_n), ("-O3 --patches 1", 3, PatchOptions(patches=1), exact_n),
                                   ("-O3 (automatic patches)", 3, None, o3_n)):
        for jobs in (1, 2):
            _rate(f"{label} jobs={jobs}", n,
                  lambda n=n, level=level, patch=patch, jobs=jobs: cost_many(archs[:n], opt_level=level, patch=patch,
                                                                             jobs=jobs))


def accuracy(archs: list, level: int) -> None:
    """The estimates against the exact figures at ``-O level``."""
    model = CostModel(opt_level=level)
    start = time.perf_counter()
    est = [model.estimate(a) for a in archs]
    cold = time.perf_counter() - start
    start = time.perf_counter()
    exact = cost_many(archs, opt_level=level, jobs=2)
    t_exact = time.perf_counter() - start
    n = len(archs)
    print(f"estimate vs exact at -O{level}, {n} random subnets (r {RESOLUTIONS}, w {WIDTHS}): estimates from cold "
          f"caches {cold:.1f} s ({model.pieces} pieces compiled), exact {t_exact:.1f} s on 2 processes")
    for what, get_e, get_x in (("peak SRAM", lambda e: e.peak_sram_bytes, lambda c: c.peak_sram_bytes),
                               ("flash", lambda e: e.flash_bytes, lambda c: c.flash_bytes),
                               ("latency (instructions)", lambda e: e.latency_instructions,
                                lambda c: c.latency_instructions)):
        errs = [get_e(e) - get_x(c) for e, c in zip(est, exact, strict=True)]
        rel = [abs(d) / get_x(c) for d, c in zip(errs, exact, strict=True)]
        under = sum(d < 0 for d in errs)
        print(f"  {what:22s} |error| mean {statistics.mean(abs(d) for d in errs):12,.0f} "
              f"max {max(abs(d) for d in errs):12,.0f}  relative mean {100 * statistics.mean(rel):5.1f}% "
              f"max {100 * max(rel):5.1f}%;"
              f"  exact: {sum(d == 0 for d in errs)}/{n}, under: {under}/{n}")
    macs_equal = sum(e.macs == c.macs for e, c in zip(est, exact, strict=True))
    bound_ok = sum(e.sram_lower_bound <= c.peak_sram_bytes for e, c in zip(est, exact, strict=True))
    print(f"  MACs equal: {macs_equal}/{n}; sram_lower_bound <= exact peak: {bound_ok}/{n}")
    for sram, flash in BUDGETS:
        fit_x = [c.fits(sram, flash) for c in exact]
        fit_e = [e.fits(sram, flash) for e in est]
        fit_b = [e.sram_lower_bound <= sram for e in est]
        wrong_in = sum(fe and not fx for fe, fx in zip(fit_e, fit_x, strict=True))
        wrong_out = sum(fx and not fe for fe, fx in zip(fit_e, fit_x, strict=True))
        lost = sum(fx and not fb for fb, fx in zip(fit_b, fit_x, strict=True))
        print(f"  budget {sram // 1024} KB SRAM, {flash // 1024} KB flash: {sum(fit_x)}/{n} fit; the estimate "
              f"disagrees on {wrong_in + wrong_out} ({wrong_in} accepted that do not fit, {wrong_out} rejected that "
              f"do); the SRAM lower bound rejects {lost} that fit")


def estimate_rates(rate_n: int) -> None:
    """Evaluations per second of the estimate at one (r, w), as a stage-2 search samples it: the first pass compiles
    every piece not seen before, later passes find them all cached."""
    space = mobile_space().at(160, 0.75)
    archs = [space.sample(random.Random(10_000 + i)) for i in range(rate_n)]
    model = CostModel(opt_level=2)
    half = rate_n // 2
    start = time.perf_counter()
    estimate_many(model, archs[:half])
    first = time.perf_counter() - start
    pieces = model.pieces
    start = time.perf_counter()
    estimate_many(model, archs[half:])
    second = time.perf_counter() - start
    print(f"estimate (CostModel.estimate), mobile space at r=160 w=0.75, {rate_n} subnets: the first {half} took "
          f"{first:.1f} s ({pieces} pieces compiled), the next {rate_n - half} {second:.1f} s "
          f"({model.pieces - pieces} new pieces); then, every piece cached:")
    for jobs in (1, 2):
        _rate(f"estimate jobs={jobs}", rate_n, lambda jobs=jobs: estimate_many(model, archs, jobs=jobs))
    model2 = CostModel(opt_level=2)
    repeat = archs[:20]
    for a in repeat:
        model2.cost(a)
    _rate("CostModel.cost, architectures seen before", len(repeat), lambda: [model2.cost(a) for a in repeat])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60, help="subnets for the accuracy comparison (default 60)")
    ap.add_argument("--o3", type=int, default=6, help="subnets compared at -O3 with patches (default 6)")
    ap.add_argument("--rate-n", type=int, default=2000, help="subnets for the estimate's rate (default 2000)")
    ap.add_argument("--exact-n", type=int, default=8, help="subnets for the exact rates (default 8)")
    ap.add_argument("--o3-n", type=int, default=2, help="subnets for the -O3 automatic-patch rate (default 2)")
    ap.add_argument("--profile", action="store_true", help="profile four exact -O2 evaluations")
    args = ap.parse_args()
    space = mcunet_space()
    archs = [space.sample(random.Random(i)) for i in range(max(args.n, args.exact_n))]
    ops = [len([o for o in to_graph(a).ops if o.kind != "const"]) for a in archs[:args.exact_n]]
    print(f"{len(archs)} subnets: {min(ops)}-{max(ops)} kernel ops (first {args.exact_n})")
    exact_rates(archs, args.exact_n, args.o3_n)
    estimate_rates(args.rate_n)
    accuracy(archs[:args.n], 2)
    if args.o3:
        accuracy(archs[:args.o3], 3)
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        for a in archs[:4]:
            cost(a, opt_level=2)
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
