"""``bench/mobilenetv2.py`` builds a valid MobileNetV2-224 of about 300 M MACs; ``bench/patches.py`` tables rows."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx

from compiler.analysis import total_macs
from compiler.driver import load_model

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_mobilenetv2_is_valid_and_about_300m_macs(tmp_path: Path) -> None:
    mnv2 = _load("mobilenetv2")
    built = mnv2.ensure(tmp_path, images=2)
    model = onnx.load(built.onnx)
    onnx.checker.check_model(model, full_check=True)
    assert sum(n.op_type == "Add" for n in model.graph.node) == 10  # residual blocks of MobileNetV2
    assert sum(n.op_type == "Conv" for n in model.graph.node) == 52
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    assert 3_400_000 < params < 3_600_000  # 3.5 M, BatchNorm folded away
    macs = total_macs(load_model(built.onnx).graph)
    assert 290_000_000 < macs < 310_000_000
    cal = np.load(built.calibration)
    assert cal.shape == (2, 3, 224, 224) and cal.dtype == np.float32
    assert np.array_equal(cal, mnv2.calibration_images(2))
    stamp = built.onnx.stat().st_mtime_ns
    assert mnv2.ensure(tmp_path, images=2).onnx.stat().st_mtime_ns == stamp  # same bytes: not rewritten


def test_patches_table_marks_targets() -> None:
    bench = _load("patches")
    rows = [bench.PatchRow("mcunet_vww", "per layer", 76_856, 76_856, 0, 1, (), "nn.depthwise_conv2d",
                           (1, 20, 20, 48), False, 100, 0.0, 1.0),
            bench.PatchRow("mcunet_vww", "patched, input streamed", 31_000, 76_856, 6, 3, (1, 20, 20, 16),
                           "nn.conv2d", (1, 20, 20, 16), False, 103, 0.03, 1.0)]
    text = bench.table(rows, ["vww_96_int8.tflite: not found"])
    assert "| 6 → 1x20x20x16 | 3x3 |" in text and "| ≤ 30,000 | **no** |" in text
    assert "2.48x" in text and "- skipped: vww_96_int8.tflite" in text
    assert "No model was measured." in bench.table([], [])
