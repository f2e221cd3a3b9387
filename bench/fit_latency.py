"""Fit the NAS latency model (nas/latency.py) to emulated Cortex-M7 runs and report its accuracy on held-out subnets.

``python bench/fit_latency.py [--train 24] [--test 12] [--cache FILE] [--jobs 1] [--write]``

Samples random subnets of the mobile space at small resolutions (so each emulated run takes seconds; widths and
depths kept small, and subnets whose constants exceed 80% of the board's flash resampled), compiles each with
``mcc`` at -O2 or -O3 (alternating), runs it on the emulated Cortex-M7 with the instruction-counting plugin
(``mcc bench``) and takes every layer's exact instruction count (less the 11 instructions of the layer hook, which
deployed code does not have). The first
``--train`` subnets fit the constants (least squares per op key), the next ``--test`` measure the error of the
predicted total instructions per network. ``--write`` stores the constants, what they were fitted on and the
held-out accuracy in ``nas/latency_cortex_m7.json``, which ``nas.cost`` uses. ``--cache FILE`` keeps the
measurements (one JSON line per subnet) so a rerun only fits; delete it after the kernels change.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HOOK_INSTRUCTIONS = 11
"""Instructions of the layer hook in every measured segment (backends/cortexm/emulate.py, HOOK_NOTE)."""

RESOLUTIONS = (24, 32, 40, 48)
WIDTHS = (0.25, 0.35, 0.5)
DEPTHS = (1, 2)
CACHE_FORMAT = 2
"""Version of the cached samples' keys and features (older entries are upgraded by rebuilding their graphs)."""
FLASH_SHARE = 0.8
"""Subnets whose weights and tables take more of the board's flash are resampled (the code needs the rest)."""


def space() -> Any:
    """The mobile space restricted to what emulates in seconds and fits the emulated board."""
    from nas.space import mobile_space

    return replace(mobile_space(), resolutions=RESOLUTIONS, width_mults=WIDTHS, depths=DEPTHS)


def measure(net: int, seed: int, target: str) -> dict[str, Any]:
    """Compile and emulate subnet ``net`` (sampled with ``seed + net``); its measured layers as sample dicts."""
    from compiler.driver import plan_and_lower, prepare_graph
    from compiler.emulate_cmd import bench
    from compiler.errors import DoesNotFitError
    from compiler.printer import print_graph
    from compiler.targets import get_target
    from nas.build import to_graph
    from nas.latency import FREE_KINDS, Sample, op_features, op_key

    rng = random.Random(seed + net)
    level = 2 if net % 2 == 0 else 3
    limit = get_target(target).flash_bytes * FLASH_SHARE
    while True:  # the first subnet whose weights leave room for the code
        arch = space().sample(rng)
        graph = to_graph(arch)
        prepare_graph(graph, opt_level=level, target=target, verify_each=False)
        _, program, _ = plan_and_lower(graph, "model", verify_each=False, flash_bytes=get_target(target).flash_bytes)
        if sum(a.array.nbytes for a in (*program.weights, *program.tables)) <= limit:
            break
    by_name = {str(op.results[0].name): op for op in graph.ops if op.results and op.kind not in FREE_KINDS}
    entry: dict[str, Any] = {"net": net, "arch": arch.to_json(), "level": level, "samples": [],
                             "format": CACHE_FORMAT}
    with tempfile.TemporaryDirectory(prefix="mcc-fit-") as tmp:
        mir = Path(tmp) / "net.mir"
        mir.write_text(print_graph(to_graph(arch)))
        try:
            res = bench(mir, Path(tmp) / "project", target=target, opt_level=level, opt="O3", counting="plugin")
        except DoesNotFitError as e:
            entry["skipped"] = str(e)
            return entry
    for row in res.layers:
        if row.instructions is None:
            continue
        op = by_name[row.name]
        if op.kind != row.op:
            raise RuntimeError(f"layer {row.name}: report says {row.op}, the cost model's graph {op.kind}")
        entry["samples"].append(Sample(net, op_key(op), op_features(op), row.instructions - HOOK_INSTRUCTIONS)
                                .to_dict())
    entry["instructions"] = sum(s["instructions"] for s in entry["samples"])
    return entry


def upgrade(entry: dict[str, Any], target: str) -> dict[str, Any]:
    """A cached entry of an earlier format (fewer features) with today's keys and features: the subnet's graph is
    rebuilt and its kernel ops matched to the measured layers in order (by MACs, outputs and inputs)."""
    if entry.get("format") == CACHE_FORMAT:
        return entry
    from compiler.driver import plan_and_lower, prepare_graph
    from compiler.targets import get_target
    from nas.build import to_graph
    from nas.latency import FREE_KINDS, op_features, op_key
    from nas.space import Arch

    graph = to_graph(Arch.from_json(entry["arch"]))
    prepare_graph(graph, opt_level=entry["level"], target=target, verify_each=False)
    plan_and_lower(graph, "model", verify_each=False, flash_bytes=get_target(target).flash_bytes)
    ops = iter(op for op in graph.ops if op.kind not in FREE_KINDS)
    new = []
    for s in entry["samples"]:
        for op in ops:
            f = op_features(op)
            was = (s["features"][0], s["features"][2], s["features"][3]) if "features" in s else (
                s["macs"], s["outputs"], s["inputs"])
            if (f[0], f[2], f[3]) == was:
                new.append({"net": s["net"], "key": op_key(op), "features": list(f),
                            "instructions": s["instructions"]})
                break
        else:
            raise RuntimeError(f"net {entry['net']}: no op matches the measured layer {s}")
    return {**entry, "samples": new, "format": CACHE_FORMAT}


def _measure_job(job: tuple[int, int, str]) -> dict[str, Any]:
    return measure(*job)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=24, help="subnets to fit on (default 24)")
    ap.add_argument("--test", type=int, default=12, help="held-out subnets to measure the error on (default 12)")
    ap.add_argument("--seed", type=int, default=500)
    ap.add_argument("--target", default="cortex-m7")
    ap.add_argument("--cache", type=Path, help="JSON-lines file of measurements to reuse and extend")
    ap.add_argument("--jobs", type=int, default=1, help="emulated runs in parallel (default 1)")
    ap.add_argument("--write", action="store_true", help="store the fit in nas/latency_cortex_m7.json")
    args = ap.parse_args()

    from nas.latency import LATENCY_FILE, Sample, evaluate, fit

    cached: dict[int, dict[str, Any]] = {}
    if args.cache and args.cache.is_file():
        for line in args.cache.read_text().splitlines():
            e = json.loads(line)
            cached[e["net"]] = e
    wanted = range(args.train + args.test)
    todo = [(n, args.seed, args.target) for n in wanted if n not in cached]
    start = time.perf_counter()
    if todo:
        print(f"emulating {len(todo)} subnets on {args.target} ({args.jobs} at a time) ...", flush=True)
        if args.jobs > 1:
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(args.jobs) as pool:
                results = pool.imap_unordered(_measure_job, todo)
                for e in results:
                    cached[e["net"]] = e
                    if args.cache:
                        with args.cache.open("a") as f:
                            f.write(json.dumps(e) + "\n")
                    print(f"  net {e['net']}: {len(e['samples'])} layers", flush=True)
        else:
            for job in todo:
                e = _measure_job(job)
                cached[e["net"]] = e
                if args.cache:
                    with args.cache.open("a") as f:
                        f.write(json.dumps(e) + "\n")
                print(f"  net {e['net']}: {len(e['samples'])} layers, {time.perf_counter() - start:.0f} s", flush=True)
    upgraded = {n: upgrade(cached[n], args.target) for n in wanted}
    if args.cache and any(upgraded[n] is not cached[n] for n in wanted):
        args.cache.write_text("".join(json.dumps(upgraded[n]) + "\n" for n in sorted(upgraded)))
    cached.update(upgraded)
    skipped = [n for n in wanted if cached[n].get("skipped")]
    train = [Sample.from_dict(s) for n in range(args.train) for s in cached[n]["samples"]]
    test = [Sample.from_dict(s) for n in range(args.train, args.train + args.test) for s in cached[n]["samples"]]
    n_train = len({s.net for s in train})
    n_test = len({s.net for s in test})
    desc = (f"Cortex-M7 (QEMU mps2-an500, instruction-counting plugin), arm-none-eabi-gcc -O3, mcc -O2/-O3; "
            f"{len(train)} layers of {n_train} random subnets of the mobile space (r {RESOLUTIONS}, w {WIDTHS}, "
            f"depths {DEPTHS}, seed {args.seed}); python bench/fit_latency.py --train {args.train} "
            f"--test {args.test} --write")
    model = fit(train, desc)
    acc_train = evaluate(model, train)
    acc = evaluate(model, test) if test else None
    model = replace(model, accuracy={"held_out": acc, "train": acc_train})
    print(f"fitted on {len(train)} layers of {n_train} subnets; keys: {', '.join(sorted(model.coef))}")
    if skipped:
        print(f"skipped (did not fit the board): nets {skipped}")
    for label, a in (("train", acc_train), ("held-out", acc)):
        if a is None:
            continue
        print(f"{label:9s} {a['networks']:3d} subnets: total instructions mean |rel. error| "
              f"{100 * a['mean_rel_error']:.1f}%, max {100 * a['max_rel_error']:.1f}%; per layer (>= 1k instr.) "
              f"mean {100 * a['layer_mean_rel_error']:.1f}%, max {100 * a['layer_max_rel_error']:.1f}%")
    if n_test:
        from nas.latency import DEFAULT_LATENCY

        d = evaluate(DEFAULT_LATENCY, test)
        print(f"(the unfitted defaults on the held-out subnets: mean {100 * d['mean_rel_error']:.1f}%, "
              f"max {100 * d['max_rel_error']:.1f}%)")
    if args.write:
        LATENCY_FILE.write_text(model.to_json())
        print(f"wrote {LATENCY_FILE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
