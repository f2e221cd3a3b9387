"""mcc's ONNX QDQ export (what ``mcc compare`` gives TVM and onnxruntime when they cannot read a ``.tflite``): a valid
ONNX model whose onnxruntime results stay within a couple of quantization steps of mcc's reference interpreter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compiler.driver import prepare_model
from compiler.errors import MccError
from compiler.export_onnx import export_onnx
from compiler.interpreter import run
from compiler.ir import DType, Graph, QuantParams, TensorType
from tests.helpers import random_input
from tests.models import model_path

ort = pytest.importorskip("onnxruntime")
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tiny_cnn.mir"


def _max_steps(graph: Graph, path: Path, n: int = 6) -> int:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    worst = 0
    for _ in range(n):
        xs = [random_input(v, rng) for v in graph.inputs]
        want = run(graph, xs)
        got = sess.run(None, {f"input_{i}": x for i, x in enumerate(xs)})
        for a, b in zip(want, got, strict=True):
            assert a.shape == b.shape and a.dtype == b.dtype
            worst = max(worst, int(np.abs(a.astype(int) - b.astype(int)).max()))
    return worst


def test_tiny_cnn_export_runs_close_to_the_interpreter(tmp_path):
    """conv, depthwise, pointwise, residual add, mean, reshape, fully connected, softmax."""
    graph = prepare_model(EXAMPLE, opt_level=2).graph
    path = export_onnx(graph, tmp_path / "tiny.onnx")
    assert _max_steps(graph, path) <= 2


@pytest.mark.parametrize("rel", ["tflm/person_detect.tflite", "mlperf_tiny/ic_resnet8_int8.tflite"])
def test_real_model_export_runs_close_to_the_interpreter(rel, tmp_path):
    graph = prepare_model(model_path(rel), opt_level=2).graph
    path = export_onnx(graph, tmp_path / "m.onnx")
    assert _max_steps(graph, path, n=3) <= 2


def test_an_op_without_an_onnx_form_is_a_clean_error(tmp_path):
    g = Graph("t")
    q = QuantParams.per_tensor(0.1, 0)
    x = g.add_input(TensorType((1, 4, 4, 2), DType.INT8, q), "x")
    g.outputs = [g.create("nn.transpose", [x], [TensorType((1, 2, 4, 4), DType.INT8, q)], {"perm": (0, 3, 1, 2)},
                          ["t"]).result]
    with pytest.raises(MccError, match=r"no ONNX form for nn\.transpose"):
        export_onnx(g, tmp_path / "t.onnx")
