"""The DSP paths of the add, average pool and mean kernels (SMMLAR, SSAT, SXTAB16 inline assembly, compiled only
for cores with the DSP extension at -O1 and above) on an emulated Cortex-M7, bit-exact with the interpreter. The
host build runs only their portable twins (tests/backend/test_c_elementwise_fast.py). Skipped without QEMU or the
Arm toolchain."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from compiler.driver import LoadedModel, compile_graph, split_io
from compiler.interpreter import run
from compiler.ir import Graph
from compiler.targets import get_target
from compiler.verifier import verify
from tests.backend.test_c_elementwise_fast import ADD_CASES, _adds_graph, _extreme_batches, _pool_mean_graph

pytestmark = [
    pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm is not installed"),
    pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc is not installed"),
]
pytest.importorskip("elftools", reason="pyelftools is not installed (pip install pyelftools)")

from backends.cortexm.emulate import emulate  # noqa: E402


def _merged() -> Graph:
    """The adds of every table-kernel variant and the pooling/mean cases in one graph (one build, one run)."""
    return _adds_graph(ADD_CASES, _pool_mean_graph())


def test_dsp_paths_on_cortex_m7_match_interpreter(tmp_path):
    g = _merged()
    verify(g)
    model = LoadedModel(g, tuple(tuple(range(v.type.rank)) for v in g.inputs),
                        tuple(tuple(range(v.type.rank)) for v in g.outputs),
                        tuple(v.type.shape for v in g.inputs), tuple(v.type.shape for v in g.outputs))
    ins, outs = split_io(g, model)
    report = compile_graph(g.clone(), tmp_path / "c", name="t", target=get_target("cortex-m7"), ins=ins, outs=outs,
                           source="test", opt_level=0, pipeline="")
    samples = _extreme_batches(g, 2, 9)
    batches = [np.stack([s[i] for s in samples]) for i in range(len(g.inputs))]
    res = emulate(tmp_path / "c", report, "cortex-m7", "O3", batches, compare_host=False)
    for k, sample in enumerate(samples):
        for j, want in enumerate(run(g, sample)):
            np.testing.assert_array_equal(res.outputs[j][k], want, err_msg=f"sample {k}, output {g.outputs[j].name}")
