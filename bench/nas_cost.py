"""Speed of the NAS cost model (nas.cost.cost): evaluations per second on MCUNet-sized subnets, and where the time
goes. ``python bench/nas_cost.py [--n 12] [--profile]``."""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import time

from compiler.pipelines import PatchOptions
from nas.cost import cost, cost_many
from nas.space import mobile_space


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    space = mobile_space().at(96, 0.5)  # MCUNet-sized: 17-25 MBConv blocks, ~100-150 kernel ops
    archs = [space.sample(random.Random(i)) for i in range(args.n)]
    ops = [len([o for o in __import__("nas.build", fromlist=["to_graph"]).to_graph(a).ops if o.kind != "const"])
           for a in archs]
    print(f"{args.n} subnets of the mobile space at r=96 w=0.5: {min(ops)}-{max(ops)} kernel ops")
    for label, level, patch in (("-O2", 2, None), ("-O3 --patches 1", 3, PatchOptions(patches=1)),
                                ("-O3 (automatic patches)", 3, None)):
        for jobs in (1, 2):
            n = args.n if level < 3 or patch is not None else max(2, args.n // 3)
            start = time.perf_counter()
            cost_many(archs[:n], opt_level=level, patch=patch, jobs=jobs)
            dt = time.perf_counter() - start
            print(f"  {label:26s} jobs={jobs}: {n / dt:6.2f} evaluations/s ({1000 * dt / n:7.1f} ms each)")
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        for a in archs[:4]:
            cost(a, opt_level=2)
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
