"""The cost model is the compiler: peak SRAM, flash, MACs and an instruction estimate, by running mcc itself.

:func:`cost` takes an :class:`~nas.space.Arch`, an in-memory int8 :class:`~compiler.ir.Graph` or a model file and
runs exactly what ``mcc MODEL -O LEVEL --target T`` runs before writing C:

* an ``Arch`` becomes the int8 graph of :func:`nas.build.to_graph`; a graph (or that one) goes through
  :func:`compiler.driver.prepare_graph` (the lowering pipeline for an integer graph, then ``-O LEVEL`` with the
  same patch options), then :func:`compiler.driver.plan_and_lower` (``plan-memory`` and the C lowering). Peak SRAM
  is the planned arena and flash the lowered weights and tables, the two figures ``compile_graph`` writes to
  ``report.json``. The same graph printed as ``.mir`` and compiled with ``mcc`` gives the same report, to the
  byte (``tests/nas/test_cost_exact.py`` checks 50 random subnets).
* a model file (``.onnx``, ``.mir``, ``.tflite``) goes through :func:`compiler.driver.prepare_model`, as ``mcc``
  and ``mcc analyze`` do.

The only difference from ``mcc`` is that the verifier does not run between passes (``verify=True`` turns it
back on): it only reads the graph, so the figures are the same.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compiler.analysis import op_macs
from compiler.driver import plan_and_lower, prepare_graph, prepare_model
from compiler.ir import Graph, Op
from compiler.pipelines import PatchOptions
from compiler.targets import get_target
from nas.build import to_graph
from nas.space import Arch


@dataclass(frozen=True)
class LatencyModel:
    """Instructions per op ≈ ``per_mac[kind] * MACs + per_output[kind] * output elements + per_call[kind]``.

    Kinds missing from a table use its ``"*"`` entry. ``fitted`` names what the constants were fitted on (empty: the
    defaults below, rough guesses not fitted to any run).
    """

    per_mac: dict[str, float]
    per_output: dict[str, float]
    per_call: dict[str, float]
    fitted: str = ""

    def op_instructions(self, op: Op) -> float:
        """Estimated instructions of one kernel op."""
        k = op.kind
        outs = sum(r.type.num_elements for r in op.results)
        return (self.per_mac.get(k, self.per_mac["*"]) * op_macs(op) + self.per_output.get(k, self.per_output["*"])
                * outs + self.per_call.get(k, self.per_call["*"]))

    def estimate(self, graph: Graph) -> float:
        """Estimated instructions of one inference of ``graph`` (constants and aliases cost nothing)."""
        return sum(self.op_instructions(op) for op in graph.ops
                   if op.kind not in ("const", "nn.reshape", "nn.flatten", "nn.identity"))

    def to_json(self) -> str:
        """The constants as JSON."""
        return json.dumps({"per_mac": self.per_mac, "per_output": self.per_output, "per_call": self.per_call,
                           "fitted": self.fitted}, indent=2)

    @staticmethod
    def from_json(text: str) -> LatencyModel:
        """Read :meth:`to_json`'s output."""
        d = json.loads(text)
        return LatencyModel(d["per_mac"], d["per_output"], d["per_call"], d.get("fitted", ""))


DEFAULT_LATENCY = LatencyModel(
    per_mac={"*": 4.0, "nn.conv2d": 4.0, "nn.depthwise_conv2d": 6.0, "nn.fully_connected": 3.0, "nn.mean": 3.0},
    per_output={"*": 20.0, "nn.conv2d": 30.0, "nn.depthwise_conv2d": 20.0},
    per_call={"*": 300.0},
)
"""Unfitted defaults; :data:`LATENCY_FILE` overrides them when it exists (``bench/nas_latency.py`` writes it)."""

LATENCY_FILE = Path(__file__).with_name("latency_cortex_m7.json")


def latency_model() -> LatencyModel:
    """The fitted Cortex-M7 model when ``nas/latency_cortex_m7.json`` exists, else :data:`DEFAULT_LATENCY`."""
    if LATENCY_FILE.is_file():
        return LatencyModel.from_json(LATENCY_FILE.read_text())
    return DEFAULT_LATENCY


@dataclass(frozen=True)
class Cost:
    """What one network costs on one target at one optimisation level, as ``mcc``'s ``report.json`` says."""

    peak_sram_bytes: int
    flash_bytes: int
    macs: int
    latency_instructions: float
    """Estimated instructions of one inference (:class:`LatencyModel`)."""
    patch_stage: dict[str, Any] | None = field(default=None, compare=False)
    """What ``patch-stage`` decided, when it ran (as ``report.json``'s ``patch_stage``)."""

    def fits(self, sram: int, flash: int) -> bool:
        """True when both figures are within the budgets."""
        return self.peak_sram_bytes <= sram and self.flash_bytes <= flash


def cost(model: Arch | Graph | Path | str, target: str = "cortex-m7", opt_level: int = 3,
         patch: PatchOptions | None = None, *, seed: int = 0, verify: bool = False,
         calibration: str | None = None, latency: LatencyModel | None = None) -> Cost:
    """Peak SRAM, flash, MACs and estimated instructions of ``model`` compiled by mcc at ``-O opt_level`` for
    ``target``. A :class:`Graph` is changed in place (pass a clone to keep it); an :class:`Arch` is built with
    :func:`nas.build.to_graph` (``seed`` sets its quantization scales). A float model file needs the
    ``calibration`` data it will be compiled with: flash depends on it (equal requantization tables are shared)."""
    tgt = get_target(target)
    if isinstance(model, Arch):
        model = to_graph(model, seed)
    if isinstance(model, Graph):
        graph = model
        _, notes = prepare_graph(graph, opt_level=opt_level, target=tgt.name, patch=patch, verify_each=verify)
    else:
        prepared = prepare_model(Path(model), opt_level=opt_level, target=tgt.name, calibration=calibration,
                                 patch=patch)
        graph, notes = prepared.graph, prepared.notes
    plan, program, _ = plan_and_lower(graph, "model", verify_each=verify, flash_bytes=tgt.flash_bytes)
    flash = sum(a.array.nbytes for a in program.weights) + sum(a.array.nbytes for a in program.tables)
    macs = sum(op_macs(op) for op in graph.ops)
    lat = (latency or latency_model()).estimate(graph)
    return Cost(plan.arena_bytes, flash, macs, lat, notes.get("patch_stage"))


def _cost_job(job: tuple[str, str, int, PatchOptions | None]) -> Cost:
    arch_json, target, opt_level, patch = job
    return cost(Arch.from_json(arch_json), target, opt_level, patch)


def cost_many(archs: Sequence[Arch], target: str = "cortex-m7", opt_level: int = 3,
              patch: PatchOptions | None = None, *, jobs: int = 1) -> list[Cost]:
    """:func:`cost` of every architecture, in order; ``jobs > 1`` spreads them over that many local processes."""
    work = [(a.to_json(), target, opt_level, patch) for a in archs]
    if jobs <= 1 or len(work) < 2:
        return [_cost_job(w) for w in work]
    import multiprocessing as mp

    with mp.get_context("fork").Pool(jobs) as pool:
        return pool.map(_cost_job, work, chunksize=max(1, len(work) // (4 * jobs)))


def evaluations_per_second(archs: Iterable[Arch], **kw: Any) -> float:
    """Wall-clock rate of :func:`cost_many` over ``archs``."""
    import time

    items = list(archs)
    start = time.perf_counter()
    cost_many(items, **kw)
    return len(items) / (time.perf_counter() - start)
