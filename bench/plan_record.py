"""Record what the memory planner and the lowering decide, to check that a speed-up changed no result.

``PYTHONPATH=A python bench/plan_record.py > a.txt; PYTHONPATH=B python bench/plan_record.py > b.txt; diff a.txt b.txt``

One line per case: random MCUNet-sized subnets of the mobile space (r 96-176, w 0.35-1.0) at -O2 and a few at -O3,
small-space subnets, and the real models under /work/shared/models (skipped when absent) at -O2 and -O3: the arena,
the flash of the lowered constants, and a digest of every activation's offset, every scratch offset and the ops
on the in-place depthwise kernel. ``--mobile N --mobile-o3 N --small N`` set the counts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after PYTHONPATH, so PYTHONPATH=A chooses the code under test

from compiler.driver import plan_and_lower, prepare_graph, prepare_model  # noqa: E402
from compiler.ir import Graph  # noqa: E402
from compiler.targets import get_target  # noqa: E402
from nas.build import to_graph  # noqa: E402
from nas.space import mobile_space, small_space  # noqa: E402

MODELS = Path("/work/shared/models")
REAL = ("mlperf_tiny/vww_96_int8.tflite", "mlperf_tiny/kws_ref_model_int8.tflite", "mlperf_tiny/ic_resnet8_int8.tflite",
        "mlperf_tiny/ad01_int8.tflite", "tflm/person_detect.tflite", "tinyengine/mcunet_vww.tflite")


def record(graph: Graph) -> str:
    """Arena, flash and the digest of the plan of a prepared graph."""
    plan, program, _ = plan_and_lower(graph, "model", verify_each=False,
                                      flash_bytes=get_target("cortex-m7").flash_bytes)
    flash = sum(a.array.nbytes for a in (*program.weights, *program.tables))
    offsets = sorted((str(v.name), o) for v, o in plan.offsets.items())
    scratch = sorted((op.label, o) for op, o in plan.scratch.items())
    in_place = sorted(op.label for op in graph.ops if op.attrs.get("in_place"))
    digest = hashlib.sha256(json.dumps([offsets, scratch, in_place]).encode()).hexdigest()[:16]
    return f"{plan.arena_bytes} {flash} {digest}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mobile", type=int, default=50)
    ap.add_argument("--mobile-o3", type=int, default=6)
    ap.add_argument("--small", type=int, default=40)
    args = ap.parse_args()
    mobile = replace(mobile_space(), resolutions=(96, 128, 144, 160, 176), width_mults=(0.35, 0.5, 0.75, 1.0))
    small = replace(small_space(resolutions=(16, 20, 24, 32), width_mults=(0.25, 0.35, 0.5)), depths=(1, 2))
    cases = [(f"mobile {i}", mobile, 1000 + i, 3 if i >= args.mobile else 2)
             for i in range(args.mobile + args.mobile_o3)]
    cases += [(f"small {i}", small, 1000 + i, 3 if i % 10 == 9 else 2) for i in range(args.small)]
    for label, space, seed, level in cases:
        g = to_graph(space.sample(random.Random(seed)))
        prepare_graph(g, opt_level=level, target="cortex-m7", verify_each=False)
        print(f"{label} -O{level}: {record(g)}", flush=True)
    for m in REAL:
        if not (MODELS / m).is_file():
            print(f"{m}: absent", flush=True)
            continue
        for level in (2, 3):
            print(f"{m} -O{level}: {record(prepare_model(MODELS / m, opt_level=level).graph)}", flush=True)


if __name__ == "__main__":
    main()
