"""Real .tflite models end to end against TFLM: compile at -O3, run the C on the host, compare with TFLM bit for bit.

For every model TFLM runs, 50 seeded random inputs in the model's input dtype (int8 over the full range; for a
float input, floats 5 % beyond the range its QUANTIZE can represent) go through the generated C
(:func:`compiler.runner.run_project`, one batched run) and through the TFLM interpreter (PyPI ``tflite-micro``);
the outputs must be equal. For float-output models the float outputs must be equal *and* so must the int8 tensor
before the final DEQUANTIZE (TFLM's, read with ``GetTensor``; ours, from the C fed with TFLM's own quantized input).
Also: TFLM's person-detection sample images, and models with unsupported operators failing cleanly.
Skipped with a reason when ``shared/models`` or tflite-micro is absent.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backends.c.build import run_host
from compiler.driver import compile_model
from compiler.errors import UnsupportedOpError
from compiler.ir import DType
from compiler.runner import read_report, run_project
from frontend.tflite import load_tflite
from tests.models import model_path
from tests.tflite_util import drop_trailing_ops, integer_edges, tflm, tflm_interpreter, tflm_run

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = 50
BIT_EXACT = ["mlperf_tiny/vww_96_int8.tflite", "mlperf_tiny/kws_ref_model_int8.tflite",
             "mlperf_tiny/ic_resnet8_int8.tflite", "mlperf_tiny/ad01_int8.tflite", "tflm/person_detect.tflite",
             "tflm/micro_speech_quantized.tflite", "tflm/hello_world_int8.tflite", "tinyengine/mcunet_vww.tflite",
             "tinyengine/ptq_mnist_lenet-300-100.tflite"]
UNSUPPORTED = {"tflm/micro_speech_lstm.tflite": "operator #0 (UNIDIRECTIONAL_SEQUENCE_LSTM)",
               "tflm/mnist_lstm_int8.tflite": "operator #0 (UNIDIRECTIONAL_SEQUENCE_LSTM)",
               "tflm/keyword_scrambled.tflite": "operator #1 (SVDF)",
               "tflm/audio_preprocessor_int8.tflite": "(CUSTOM:Signal"}
LENET = "tinyengine/ptq_mnist_lenet-300-100.tflite"


def _random_inputs(report: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``SAMPLES`` inputs per graph input, stacked along the model's batch axis of 1."""
    feeds = {}
    for spec in report["inputs"]:
        shape = (SAMPLES, *spec["model_shape"][1:])
        dt = DType(spec["model_dtype"])
        if dt.is_float:
            c_dt = DType(spec["dtype"])
            lo = (c_dt.qmin - spec["zero_point"]) * spec["scale"]
            hi = (c_dt.qmax - spec["zero_point"]) * spec["scale"]
            margin = 0.05 * (hi - lo)
            feeds[spec["name"]] = rng.uniform(lo - margin, hi + margin, shape).astype(np.float32)
        else:
            feeds[spec["name"]] = rng.integers(dt.qmin, dt.qmax + 1, shape).astype(dt.np)
    return feeds


def assert_identical(got: np.ndarray, want: np.ndarray, msg: str) -> None:
    """Equal arrays; float arrays bit for bit (so -0.0 differs from 0.0 and every last bit counts)."""
    if got.dtype.kind == "f":
        np.testing.assert_array_equal(got.view(f"u{got.itemsize}"), want.view(f"u{want.itemsize}"), err_msg=msg)
    else:
        np.testing.assert_array_equal(got, want, err_msg=msg)


def _check_bit_exact(model: Path, data: bytes, tmp_path: Path, seed: int) -> None:
    """Compile ``model`` (whose bytes are ``data``) at -O3 and compare 50 random inputs with TFLM."""
    tflm()
    project = tmp_path / "c"
    compile_model(model, project, opt_level=3)
    report = read_report(project)
    feeds = _random_inputs(report, np.random.default_rng(seed))
    got = run_project(project, feeds)
    edge_in, edge_out = integer_edges(data)
    float_out = [i for i in edge_out if i is not None]
    interp = tflm_interpreter(data, preserve=any(i is not None for i in (*edge_in, *edge_out)))
    names_in = [s["name"] for s in report["inputs"]]
    names_out = [s["name"] for s in report["outputs"]]
    int_in: list[list[np.ndarray]] = [[] for _ in names_in]
    int_out: list[list[np.ndarray]] = [[] for _ in names_out]
    for k in range(SAMPLES):
        xs = [feeds[n][k:k + 1] for n in names_in]
        want = tflm_run(interp, xs, len(names_out), tuple(i for i in (*edge_in, *edge_out) if i is not None))
        extra = iter(want[len(names_out):])
        for j, i in enumerate(edge_in):
            int_in[j].append(next(extra) if i is not None else xs[j])
        for j, (name, w) in enumerate(zip(names_out, want, strict=False)):
            g = got[name][k:k + 1]
            assert g.dtype == w.dtype and g.shape == w.shape, (name, g.dtype, w.dtype, g.shape, w.shape)
            assert_identical(g, w, f"{model.name}: output {name}, sample {k}")
            int_out[j].append(next(extra) if edge_out[j] is not None else w)
    if float_out:  # the int8 tensors inside the float edges, C fed with TFLM's own quantized input
        specs = [(tuple(s["shape"]), DType(s["dtype"]).np) for s in report["outputs"]]
        raw = run_host(project, report["name"], [np.concatenate(a) for a in int_in], output_specs=specs)
        for j, name in enumerate(names_out):
            np.testing.assert_array_equal(raw[j], np.concatenate(int_out[j]).reshape(raw[j].shape),
                                          err_msg=f"{model.name}: int8 tensor before DEQUANTIZE of {name}")


@pytest.mark.parametrize("rel", BIT_EXACT)
def test_model_bit_exact_with_tflm(rel, tmp_path):
    path = model_path(rel)
    _check_bit_exact(path, path.read_bytes(), tmp_path, seed=BIT_EXACT.index(rel))


def test_lenet_without_its_float_log_softmax_bit_exact_with_tflm(tmp_path):
    """ptq_mnist_lenet ends in a float LOG_SOFTMAX after DEQUANTIZE; the int8 tensor before DEQUANTIZE matches too."""
    data = drop_trailing_ops(model_path("tinyengine/ptq_mnist_lenet-300-100.tflite").read_bytes(), 1)
    model = tmp_path / "lenet_until_dequantize.tflite"
    model.write_bytes(data)
    _check_bit_exact(model, data, tmp_path, seed=99)


def _mnist_digits() -> tuple[np.ndarray, list[int]]:
    """The three real MNIST digits shipped with ONNX's mnist-8 (pixels 0..255) and the labels mnist-8 gives them."""
    import onnx
    from onnx import numpy_helper

    sets = sorted(model_path("onnx/mnist-8.onnx").parent.glob("mnist-8_test_data_set_*"))
    images = [numpy_helper.to_array(onnx.load_tensor(str(s / "input_0.pb"))) for s in sets]
    labels = [int(np.argmax(numpy_helper.to_array(onnx.load_tensor(str(s / "output_0.pb"))))) for s in sets]
    return np.concatenate(images).reshape(-1, 28, 28, 1), labels


def test_lenet_float_log_softmax_tail_equals_interpreter_and_tflm(tmp_path):
    """The float DEQUANTIZE → LOG_SOFTMAX tail: C (also under ASan/UBSan), interpreter and TFLM agree bit for bit.

    Inputs: 50 seeded random images (floats 5 % beyond the input quantizer's [0, 1] range) and the three real MNIST
    digits of mnist-8 scaled to [0, 1] (the lenet's input quantization covers [0, 1]), which it must classify as
    mnist-8 does. The interpreter runs the integer graph the C was generated from, on TFLM's own quantized input.
    """
    from compiler.driver import compile_graph, model_name, prepare_model
    from compiler.interpreter import run
    from compiler.targets import get_target

    path = model_path(LENET)
    tflm()
    prepared = prepare_model(path, opt_level=3)
    g = prepared.graph
    assert [op.kind for op in g.ops if op.kind != "const"][-2:] == ["q.dequantize", "nn.log_softmax"]
    project = tmp_path / "c"
    name = model_name(path, None)
    compile_graph(g, project, name=name, target=get_target("cortex-m7"), ins=prepared.inputs,
                  outs=prepared.outputs, source=path.name, opt_level=3, pipeline=prepared.pipeline)
    rng = np.random.default_rng(2024)
    digits, labels = _mnist_digits()
    images = np.concatenate([rng.uniform(-0.05, 1.05, (SAMPLES, 28, 28, 1)), digits / np.float32(255.0)])
    images = images.astype(np.float32)[:, None]  # [N, 1, 28, 28, 1]: N samples of the model's input shape
    interp = tflm_interpreter(path, preserve=True)
    (quantize_result,), _ = integer_edges(path.read_bytes())
    assert quantize_result is not None
    want, int_in = [], []
    for x in images:
        out, q = tflm_run(interp, [x], 1, (quantize_result,))
        want.append(out)
        int_in.append(q.reshape(g.inputs[0].type.shape))
    want_all = np.concatenate(want)
    specs = [(g.outputs[0].type.shape, np.float32)]
    for sanitize in (False, True):
        (got,) = run_host(project, name, [np.stack(int_in)], sanitize=sanitize, output_specs=specs)
        assert_identical(got.reshape(want_all.shape), want_all, f"C (sanitize={sanitize}) vs TFLM")
    for k, q in enumerate(int_in):
        (ref,) = run(g, [q])
        assert_identical(ref.reshape(want[k].shape), want[k], f"interpreter vs TFLM, sample {k}")
    assert np.argmax(want_all[SAMPLES:], axis=-1).tolist() == labels
    # The outputs are log-probabilities: every row's exp sums to about 1.
    np.testing.assert_allclose(np.exp(want_all.astype(np.float64)).sum(-1), 1.0, rtol=1e-5)


# -- TFLM's person-detection samples -------------------------------------------------------------------------------
def read_bmp_pixels(path: Path) -> np.ndarray:
    """The pixel bytes of an uncompressed 8-bit BMP in top-down row order (what PIL's ``tobytes`` gives)."""
    data = path.read_bytes()
    assert data[:2] == b"BM", f"{path} is not a BMP file"
    (offset,) = struct.unpack_from("<I", data, 10)
    _, width, height, _, bpp, compression = struct.unpack_from("<IiiHHI", data, 14)
    assert bpp == 8 and compression == 0, f"{path}: {bpp}-bit, compression {compression}; expected 8-bit BI_RGB"
    stride = (width + 3) // 4 * 4  # rows are padded to 4 bytes
    rows = np.frombuffer(data, np.uint8, stride * abs(height), offset).reshape(abs(height), stride)[:, :width]
    return np.ascontiguousarray(rows[::-1] if height > 0 else rows)  # positive height: stored bottom-up


def test_bmp_samples_have_a_gray_identity_palette():
    # The pixel bytes are palette indices; TFLM feeds them as they are, which means gray levels only because
    # entry i of the palette is (i, i, i).
    for name in ("tflm_person.bmp", "tflm_no_person.bmp"):
        data = model_path(f"samples/{name}").read_bytes()
        (header,) = struct.unpack_from("<I", data, 14)
        palette = np.frombuffer(data, np.uint8, 256 * 4, 14 + header).reshape(256, 4)
        assert (palette[:, :3] == np.arange(256)[:, None]).all()


def test_person_detect_on_tflm_samples(tmp_path):
    """TFLM's person_detection_test copies the image bytes into the int8 input unchanged (a bit-cast, not -128)."""
    path = model_path("tflm/person_detect.tflite")
    images = {name: read_bmp_pixels(model_path(f"samples/tflm_{name}.bmp")) for name in ("person", "no_person")}
    assert all(img.shape == (96, 96) for img in images.values())
    project = tmp_path / "c"
    compile_model(path, project, opt_level=3)
    batch = np.stack([img.view(np.int8).reshape(96, 96, 1) for img in images.values()])
    (got,) = run_project(project, {"input": batch}).values()
    interp = tflm_interpreter(path)
    want = np.concatenate([tflm_run(interp, [x[None]])[0] for x in batch])
    np.testing.assert_array_equal(got, want)
    no_person, person = 0, 1  # the model's output order
    assert got[0, person] > got[0, no_person], got[0]
    assert got[1, no_person] > got[1, person], got[1]
    assert got.tolist() == [[-113, 113], [57, -57]]


# -- unsupported models ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("rel", sorted(UNSUPPORTED))
def test_unsupported_model_is_a_clean_error(rel, tmp_path):
    path = model_path(rel)
    with pytest.raises(UnsupportedOpError) as e:
        load_tflite(path)
    msg = str(e.value)
    assert UNSUPPORTED[rel] in msg and "mcc supports" in msg and "\n" not in msg
    r = subprocess.run([sys.executable, "-m", "compiler.cli", str(path), "-O3", "-o", str(tmp_path / "out")],
                       capture_output=True, text=True, cwd=ROOT, env=dict(os.environ), timeout=120)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and UNSUPPORTED[rel] in r.stderr
    assert r.stderr.startswith("mcc: error: ") and not (tmp_path / "out").exists()
