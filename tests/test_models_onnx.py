"""Real ONNX models end to end: compile, build the C for the host, run, and compare with the interpreter bit for bit.

The interpreter runs the very integer graph the C was generated from (``prepare_model``), so any difference is a
backend or kernel bug. Skipped with a reason when ``shared/models`` is absent.
"""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from backends.c.build import build
from compiler.driver import compile_model, model_name
from compiler.runner import run_project
from tests.backend.harness import check_model_c_vs_interpreter
from tests.models import model_path

QDQ = ["derived_onnx/mlperf_tiny_vww_96_int8.qdq.onnx", "derived_onnx/mlperf_tiny_kws_ref_model_int8.qdq.onnx",
       "derived_onnx/mlperf_tiny_ic_resnet8_int8.qdq.onnx", "derived_onnx/mlperf_tiny_ad01_int8.qdq.onnx"]
FLOAT = ["derived_onnx/mlperf_tiny_vww_96_float.onnx", "derived_onnx/mlperf_tiny_kws_ref_model_float32.onnx",
         "derived_onnx/mlperf_tiny_ic_resnet8_float.onnx", "derived_onnx/mlperf_tiny_ad01_fp32.onnx",
         "onnx/mnist-8.onnx"]


def _c_vs_interpreter(path, tmp_path, opt_level: int, n: int, sanitize: bool = False, calibration=None) -> dict:
    return check_model_c_vs_interpreter(path, tmp_path, opt_level=opt_level, n=n, sanitize=sanitize,
                                        calibration=calibration, seed=opt_level)


@pytest.mark.parametrize("rel", QDQ)
@pytest.mark.parametrize("opt_level", [0, 3])
def test_qdq_models_bit_exact_with_interpreter(rel, opt_level, tmp_path):
    report = _c_vs_interpreter(model_path(rel), tmp_path, opt_level, n=20)
    assert report["peak_sram_bytes"] > 0 and report["macs"] > 0


@pytest.mark.parametrize("rel", QDQ)
def test_qdq_models_clean_under_sanitizers(rel, tmp_path):
    _c_vs_interpreter(model_path(rel), tmp_path, 3, n=2, sanitize=True)


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
@pytest.mark.parametrize("rel", QDQ + FLOAT)
def test_generated_c_cross_compiles_warning_free(rel, tmp_path):
    path = model_path(rel)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # float models without calibration data
        compile_model(path, tmp_path / "c", opt_level=3)
    for target in ("cortex-m7", "cortex-m4", "cortex-m0plus"):  # M0+: the portable path, no DSP
        lib = build(tmp_path / "c", target=target, opt="-O2")  # -Wall -Wextra -Werror
        assert (lib / f"lib{model_name(path, None)}.a").is_file()


@pytest.mark.parametrize("rel", FLOAT)
def test_float_models_quantize_and_run_bit_exact(rel, tmp_path):
    with pytest.warns(UserWarning, match="no calibration data"):
        _c_vs_interpreter(model_path(rel), tmp_path, 3, n=3, sanitize=True)


def test_mnist8_int8_predictions_equal_float_predictions(tmp_path):
    path = model_path("onnx/mnist-8.onnx")
    sets = sorted(path.parent.glob("mnist-8_test_data_set_*"))
    assert len(sets) == 3
    inputs = [numpy_helper.to_array(onnx.load_tensor(str(s / "input_0.pb"))) for s in sets]
    expected = [numpy_helper.to_array(onnx.load_tensor(str(s / "output_0.pb"))) for s in sets]
    # The only MNIST digits we have are these three; calibrate on them (see the issue note).
    cal = tmp_path / "cal.npy"
    np.save(cal, np.concatenate(inputs))
    compile_model(path, tmp_path / "c", opt_level=3, calibration=str(cal))
    got = run_project(tmp_path / "c", {"Input3": np.concatenate(inputs)})  # 3 samples along the batch axis
    logits = got["Plus214_Output_0"]
    assert logits.shape == (3, 10)
    assert [int(np.argmax(e)) for e in expected] == [int(np.argmax(v)) for v in logits]
