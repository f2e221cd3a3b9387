"""Benchmark: MCUNet's search-space optimisation (``mcc-nas space``) on the issue's tiny budget.

The small (Fashion-MNIST) space on Cortex-M4 with 64 KB SRAM and 256 KB flash: every (resolution, width) space of
the default grid gets ``--samples`` random subnets, each costed by the compiler (``nas.cost``, mcc ``-O LEVEL``);
the space whose fitting subnets have the highest mean MACs is chosen. Prints the table, writes the MACs CDF to
``docs/img/nas_space_cdf.png``, and with ``--update-readme`` writes both into README.md between the bench:nas_space
markers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.readme import provenance, update_readme  # noqa: E402
from nas.cli import DEFAULT_GRID  # noqa: E402
from nas.space import small_space  # noqa: E402
from nas.space_opt import optimise_space, plot_cdf  # noqa: E402

PLOT = ROOT / "docs" / "img" / "nas_space_cdf.png"


def markdown(res, samples: int, opt_level: int, command: str) -> str:
    """The README text: provenance, the table, the plot."""
    lines = [f"{provenance(command)}; small space (1x28x28-style input, 10 classes) on cortex-m4 with SRAM 65,536 B "
             f"and flash 262,144 B; {samples} random subnets per (r, w), each costed by mcc -O{opt_level} "
             f"(`nas.cost`); {res.evaluations:,} evaluations in {res.seconds:,.0f} s ({res.rate:,.1f}/s).", "",
             "| r | w | subnets that fit | mean MACs of those (M) | |", "|---|---|---|---|---|"]
    for r in res.results:
        macs = f"{r.mean_macs / 1e6:,.2f}" if r.satisfying_macs else "-"
        lines.append(f"| {r.resolution} | {r.width_mult:g} | {100 * r.fraction:.1f}% | {macs} | "
                     f"{'**chosen**' if r is res.best else ''} |")
    lines += ["", f"![MACs CDF of the fitting subnets per space]({PLOT.relative_to(ROOT).as_posix()})", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1000, help="subnets per space (default 1000, as MCUNet)")
    ap.add_argument("-O", dest="opt_level", type=int, default=2, choices=range(4),
                    help="mcc level the subnets are costed at (default 2)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--update-readme", action="store_true")
    args = ap.parse_args()
    resolutions, widths = DEFAULT_GRID["small"]
    res = optimise_space(small_space(), resolutions, widths, sram=65536, flash=262144, samples=args.samples,
                         target="cortex-m4", opt_level=args.opt_level, jobs=args.jobs,
                         progress=lambda r: print(f"  r={r.resolution} w={r.width_mult:g}: {100 * r.fraction:.1f}% "
                                                  "fit", file=sys.stderr, flush=True))
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    plot_cdf(res, str(PLOT), f"small space on cortex-m4 (64 KB SRAM, 256 KB flash), {args.samples} samples per space")
    command = f"python bench/nas_space.py --samples {args.samples} -O {args.opt_level}"
    text = markdown(res, args.samples, args.opt_level, command)
    print(text)
    if args.update_readme:
        update_readme("nas_space", text)
    return 0 if res.best is not None else 1


if __name__ == "__main__":
    raise SystemExit(main())
