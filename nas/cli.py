"""``mcc-nas``: TinyNAS on mcc's cost model: ``space`` (stage 1, search-space optimisation), ``search`` (stage 2:
supernet, evolution, winner vs scaled MobileNetV2) and ``train-supernet`` (the worker ``torchrun`` starts)."""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from compiler.errors import MccError
from compiler.pipelines import PatchOptions
from compiler.targets import get_target
from nas.cost import cost_many
from nas.space import SPACES
from nas.space_opt import SpaceResult, format_table, optimise_space, plot_cdf

DEFAULT_GRID = {"small": ((24, 28, 32, 40, 48), (0.25, 0.35, 0.5, 0.75, 1.0)),
                "mobile": ((48, 64, 80, 96, 112, 128), (0.3, 0.4, 0.5, 0.6, 0.7, 0.8))}


class UsageError(MccError):
    """A malformed command line."""

    exit_code = 2


def _ints(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise UsageError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < 8:
        raise UsageError(f"resolutions must be integers >= 8, got {text!r}")
    return vals


def _floats(text: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise UsageError(f"expected comma-separated numbers, got {text!r}") from None
    if not vals or not all(0 < v <= 4 for v in vals):
        raise UsageError(f"width multipliers must be in (0, 4], got {text!r}")
    return vals


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mcc-nas", description="TinyNAS with mcc as the cost model.")
    sub = p.add_subparsers(dest="command")
    s = sub.add_parser("space", help="search-space optimisation (MCUNet stage 1): pick the (r, w) space",
                       description="Sample subnets of each (resolution, width) space, keep those that fit the "
                                   "target's SRAM and flash as mcc compiles them, and choose the space whose "
                                   "fitting subnets have the highest mean MACs.")
    s.add_argument("--target", default="cortex-m7", help="cortex-m7 (default), cortex-m4, stm32h743, ...")
    s.add_argument("--sram", type=int, metavar="BYTES", help="SRAM budget (default: the target's)")
    s.add_argument("--flash", type=int, metavar="BYTES", help="flash budget (default: the target's)")
    s.add_argument("--space", choices=sorted(SPACES), default="small",
                   help="skeleton: small (28x28-style inputs, default) or mobile (MCUNet's ImageNet style)")
    s.add_argument("--in-channels", type=int, default=None, help="input channels (small: 1, mobile: 3)")
    s.add_argument("--classes", type=int, default=None, help="number of classes (small: 10, mobile: 1000)")
    s.add_argument("--resolutions", metavar="R,R,...", help="grid of input resolutions")
    s.add_argument("--widths", metavar="W,W,...", help="grid of width multipliers")
    s.add_argument("--samples", type=int, default=1000, help="subnets per space (default 1000)")
    s.add_argument("--time-budget", type=float, default=600.0, metavar="SECONDS",
                   help="reduce --samples so the grid takes about this long at the measured rate (default 600; "
                        "0: never reduce)")
    s.add_argument("-O", dest="opt_level", type=int, choices=range(4), default=3, metavar="LEVEL",
                   help="mcc optimisation level the subnets are costed at (default 3, with patch-based inference)")
    s.add_argument("--patches", type=int, metavar="P", help="as mcc's --patches (1: per-layer, faster to cost)")
    s.add_argument("--jobs", type=int, default=1, help="local processes evaluating subnets (default 1)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--plot", metavar="PNG", help="write the MACs CDF of each space's fitting subnets")
    _search_parser(sub)
    t = sub.add_parser("train-supernet", help="(internal) train the supernet of a search directory; run by torchrun",
                       description="Train the supernet of an mcc-nas search directory (config.json, "
                                   "supernet_space.json). 'mcc-nas search --nproc N' runs this under torchrun; "
                                   "torch.distributed is initialised (gloo) from torchrun's environment.")
    t.add_argument("out", type=Path, help="the search directory")
    return p


def _search_parser(sub: Any) -> None:
    s = sub.add_parser("search", help="TinyNAS stage 2: supernet, evolutionary search, winner vs scaled MobileNetV2",
                       description="Train a one-shot supernet (elastic kernel, expansion, depth; SPOS), search it "
                                   "with evolution under mcc's peak SRAM and flash as hard constraints, train the "
                                   "winner and a MobileNetV2 scaled to the same budgets with the same recipe, compile "
                                   "both with mcc and report their int8 C accuracy on the test set.")
    s.add_argument("--data", default="fashion-mnist", metavar="SPEC",
                   help="fashion-mnist (default; Debian's dataset-fashion-mnist), a .npz file (x_train, y_train, "
                        "x_test, y_test, optional x_val, y_val) or an image folder (train/<class>/, test/<class>/)")
    s.add_argument("--image-size", type=int, help="resize image-folder images to this size")
    s.add_argument("--grayscale", action="store_true", help="read image-folder images as grey (default RGB)")
    s.add_argument("--target", default="cortex-m4", help="cortex-m4 (default), cortex-m7, ...")
    s.add_argument("--sram", type=int, default=65536, metavar="BYTES", help="peak SRAM budget (default 65536)")
    s.add_argument("--flash", type=int, default=262144, metavar="BYTES", help="flash budget (default 262144)")
    s.add_argument("--latency", type=float, metavar="INSTRUCTIONS",
                   help="optional budget on the estimated instructions per inference (nas.cost.LatencyModel)")
    s.add_argument("--flash-margin", type=float, default=0.15, metavar="FRACTION",
                   help="share of --flash the search keeps free for what the trained network's calibrated "
                        "quantization may add (default 0.15; SRAM needs none: it is exact)")
    s.add_argument("-O", dest="opt_level", type=int, choices=range(4), default=3, metavar="LEVEL",
                   help="mcc optimisation level for costing and compiling (default 3)")
    s.add_argument("--patches", type=int, metavar="P", help="as mcc's --patches (1: per-layer)")
    s.add_argument("--budget", choices=("tiny", "quick", "full"), default="full",
                   help="full (default, under an hour on 2 cores), quick (under 10 minutes, for CI) or tiny (a "
                        "smoke test of the pipeline, seconds of training, meaningless accuracy)")
    s.add_argument("--resolutions", metavar="R,R,...", default="28",
                   help="stage-1 grid of resolutions (default 28; one value with one width skips stage 1)")
    s.add_argument("--widths", metavar="W,W,...", default="0.5,0.75", help="stage-1 grid of widths (default 0.5,0.75)")
    s.add_argument("--lr", type=float, default=5e-3, help="peak learning rate of the recipe (AdamW, one-cycle)")
    s.add_argument("--no-baseline", action="store_true", help="skip the scaled MobileNetV2 comparison")
    s.add_argument("--nproc", type=int, default=1, help="processes training the supernet (torchrun, gloo; default 1)")
    s.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where candidates are evaluated: local processes (default) or Ray")
    s.add_argument("--jobs", type=int, default=1, help="local processes for candidate evaluation and costing")
    s.add_argument("--threads", type=int, default=2, help="PyTorch threads in this process (default 2)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", type=Path, default=Path("nas_search"), help="output directory (default ./nas_search)")
    s.add_argument("--resume", action="store_true", help="continue the search in --out")


def cmd_search(args: argparse.Namespace) -> int:
    """``mcc-nas search``."""
    tgt = get_target(args.target, sram=args.sram, flash=args.flash)
    for name in ("nproc", "jobs", "threads"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.sram < 1 or args.flash < 1:
        raise UsageError("--sram and --flash must be positive")
    if args.patches is not None and args.patches < 0:
        raise UsageError(f"--patches must be >= 0, got {args.patches}")
    if not 0 <= args.flash_margin < 1:
        raise UsageError(f"--flash-margin must be in [0, 1), got {args.flash_margin}")
    from nas.data import load_dataset
    from nas.search import SearchConfig, run_search
    from nas.torch_model import require_torch

    torch = require_torch()
    torch.set_num_threads(args.threads)
    if args.executor == "ray":
        from nas.executor import make_executor

        make_executor("ray").close()
    cfg = SearchConfig(args.data, tgt.name, args.sram, args.flash, args.latency, args.opt_level, args.patches,
                       args.budget, _ints(args.resolutions), _floats(args.widths), args.seed, args.lr,
                       args.image_size, args.grayscale, not args.no_baseline, args.flash_margin)
    load_dataset(cfg.dataset, image_size=cfg.image_size, grayscale=cfg.grayscale, seed=cfg.seed)  # errors first
    run_search(cfg, args.out, resume=args.resume, nproc=args.nproc, executor=args.executor, jobs=args.jobs)
    return 0


def cmd_train_supernet(args: argparse.Namespace) -> int:
    """``mcc-nas train-supernet DIR`` (one torchrun worker)."""
    from nas.search import train_supernet_here

    if not (args.out / "config.json").is_file():
        raise MccError(f"{args.out} is not an mcc-nas search directory (no config.json)")
    train_supernet_here(args.out, print)
    return 0


def cmd_space(args: argparse.Namespace) -> int:
    """``mcc-nas space``."""
    tgt = get_target(args.target, sram=args.sram, flash=args.flash)
    if args.samples < 1:
        raise UsageError(f"--samples must be >= 1, got {args.samples}")
    if args.jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {args.jobs}")
    if args.patches is not None and args.patches < 0:
        raise UsageError(f"--patches must be >= 0, got {args.patches}")
    if args.plot and not Path(args.plot).resolve().parent.is_dir():
        raise MccError(f"cannot write {args.plot}: directory {Path(args.plot).resolve().parent} does not exist")
    grid_r, grid_w = DEFAULT_GRID[args.space]
    resolutions = _ints(args.resolutions) if args.resolutions else grid_r
    widths = _floats(args.widths) if args.widths else grid_w
    kw = {k: v for k, v in (("in_channels", args.in_channels), ("num_classes", args.classes)) if v is not None}
    if any(v < 1 for v in kw.values()):
        raise UsageError("--in-channels and --classes must be >= 1")
    space = SPACES[args.space](**kw)
    patch = PatchOptions(patches=args.patches) if args.patches is not None else None
    spaces = len(resolutions) * len(widths)
    samples = args.samples
    if args.time_budget > 0:
        rng = random.Random(args.seed)
        probe = [space.at(r, w).sample(rng) for r, w in ((max(resolutions), max(widths)),
                                                          (min(resolutions), min(widths)))]
        start = time.perf_counter()
        cost_many(probe, tgt.name, args.opt_level, patch)
        rate = len(probe) / (time.perf_counter() - start) * args.jobs
        affordable = max(1, math.floor(args.time_budget * rate / spaces))
        if affordable < samples:
            print(f"note: reduced --samples from {samples} to {affordable} per space: the cost model runs at about "
                  f"{rate:.2f} evaluations/s at -O{args.opt_level} with {args.jobs} job(s), and {spaces} spaces "
                  f"must fit in --time-budget {args.time_budget:g} s (raise it, or pass --time-budget 0)")
            samples = affordable
    print(f"{space.name} space on {tgt.name}: SRAM {tgt.sram_bytes:,} B, flash {tgt.flash_bytes:,} B, "
          f"{samples} samples per space, mcc -O{args.opt_level}", flush=True)

    def progress(r: SpaceResult) -> None:
        print(f"  r={r.resolution} w={r.width_mult:g}: {100 * r.fraction:.1f}% fit", file=sys.stderr, flush=True)

    res = optimise_space(space, resolutions, widths, sram=tgt.sram_bytes, flash=tgt.flash_bytes, samples=samples,
                         target=tgt.name, opt_level=args.opt_level, patch=patch, seed=args.seed, jobs=args.jobs,
                         progress=progress)
    print(format_table(res), end="")
    if res.best is None:
        print("no space has a subnet that fits: lower the resolutions or widths, or raise the budgets")
    else:
        print(f"chosen: r={res.best.resolution} w={res.best.width_mult:g} (mean {res.best.mean_macs / 1e6:,.2f} M "
              f"MACs over {len(res.best.satisfying_macs)} fitting subnets)")
    print(f"{res.evaluations} evaluations in {res.seconds:.1f} s ({res.rate:.2f}/s)")
    if args.plot:
        plot_cdf(res, args.plot, f"{space.name} space on {tgt.name} (SRAM {tgt.sram_bytes // 1024} KB, flash "
                                 f"{tgt.flash_bytes // 1024} KB), {samples} samples per space")
        print(f"wrote {args.plot}")
    return 0 if res.best is not None else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mcc-nas`` console script; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        if args.command == "space":
            return cmd_space(args)
        if args.command == "search":
            return cmd_search(args)
        if args.command == "train-supernet":
            return cmd_train_supernet(args)
        parser.print_help()
        return 2
    except MccError as e:
        print(f"mcc-nas: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("mcc-nas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
