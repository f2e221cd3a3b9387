"""A MobileNetV2 (width 1.0, 224x224x3) as a float ONNX model with seeded random weights, for the benchmarks.

The standard architecture (Sandler et al. 2018): a 3x3 stride-2 convolution to 32 channels, the inverted residual
blocks of :data:`BLOCKS` (1x1 expansion, 3x3 depthwise, linear 1x1 projection; a residual add when the block keeps
stride 1 and its channel count), a 1x1 convolution to 1280 channels, global average pooling and a 1000-way fully
connected layer; ReLU6 (``Clip`` 0..6) after every convolution but the projections. BatchNorm is left out (it
folds into the convolutions anyway): every convolution has a bias. Weights are He-scaled so activations keep a sane
range through the depth; the model is NCHW, as ONNX expects. About 300 M MACs.

``python bench/mobilenetv2.py [--out DIR]`` writes the model and a small calibration batch (seeded random images,
NCHW float32) for ``mcc MODEL.onnx --calibration FILE`` into ``build/bench/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "build" / "bench"
BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
"""Inverted residual stages as (expansion t, output channels c, repeats n, first stride s)."""
STEM, HEAD, CLASSES, RESOLUTION = 32, 1280, 1000, 224
OPSET = 13
SEED = 0
CALIBRATION_IMAGES = 4


class _Builder:
    """Accumulates ONNX nodes and initialisers with seeded He-scaled weights."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.init("relu6.min", np.array(0.0))
        self.init("relu6.max", np.array(6.0))

    def init(self, name: str, array: np.ndarray) -> str:
        """Add a float32 initialiser; returns its name."""
        self.inits.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def conv(self, x: str, name: str, cin: int, cout: int, k: int, stride: int, groups: int = 1,
             relu6: bool = True, gain: float = 2.0) -> str:
        """A k x k convolution with bias (``groups`` = ``cin`` for depthwise), followed by ReLU6 when asked."""
        fan_in = k * k * cin // groups
        w = self.rng.normal(0.0, np.sqrt(gain / fan_in), (cout, cin // groups, k, k))
        b = self.rng.normal(0.0, 0.05, cout)
        y = f"{name}.conv"
        self.nodes.append(helper.make_node(
            "Conv", [x, self.init(f"{name}.weight", w), self.init(f"{name}.bias", b)], [y], name=y,
            kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4, group=groups))
        if not relu6:
            return y
        self.nodes.append(helper.make_node("Clip", [y, "relu6.min", "relu6.max"], [f"{name}.relu6"],
                                           name=f"{name}.relu6"))
        return f"{name}.relu6"

    def block(self, x: str, name: str, cin: int, cout: int, t: int, stride: int) -> str:
        """One inverted residual block."""
        hidden = cin * t
        h = x if t == 1 else self.conv(x, f"{name}.expand", cin, hidden, 1, 1)
        h = self.conv(h, f"{name}.dw", hidden, hidden, 3, stride, groups=hidden)
        residual = stride == 1 and cin == cout
        # a linear projection; halved when a residual follows so the sum's variance stays about the input's
        y = self.conv(h, f"{name}.project", hidden, cout, 1, 1, relu6=False, gain=0.5 if residual else 1.0)
        if not residual:
            return y
        self.nodes.append(helper.make_node("Add", [x, y], [f"{name}.add"], name=f"{name}.add"))
        return f"{name}.add"


def build(seed: int = SEED, resolution: int = RESOLUTION) -> onnx.ModelProto:
    """The MobileNetV2 model (input ``input`` [1, 3, R, R], output ``logits`` [1, 1000]), checked by ONNX."""
    b = _Builder(seed)
    x = b.conv("input", "features.0", 3, STEM, 3, 2)
    cin, k = STEM, 1
    for t, c, n, s in BLOCKS:
        for i in range(n):
            x = b.block(x, f"features.{k}", cin, c, t, s if i == 0 else 1)
            cin, k = c, k + 1
    x = b.conv(x, f"features.{k}", cin, HEAD, 1, 1)
    b.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool"], name="pool"))
    b.nodes.append(helper.make_node("Flatten", ["pool"], ["flat"], name="flat", axis=1))
    w = b.rng.normal(0.0, np.sqrt(1.0 / HEAD), (CLASSES, HEAD))
    b.nodes.append(helper.make_node("Gemm", ["flat", b.init("classifier.weight", w),
                                             b.init("classifier.bias", np.zeros(CLASSES))],
                                    ["logits"], name="classifier", transB=1))
    graph = helper.make_graph(
        b.nodes, "mobilenetv2", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, resolution,
                                                                                          resolution])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, CLASSES])], b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="mcc-bench")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def calibration_images(count: int = CALIBRATION_IMAGES, seed: int = SEED, resolution: int = RESOLUTION) -> np.ndarray:
    """``count`` seeded random images, NCHW float32 in [-1, 1] (smooth blobs plus noise, like normalised photos)."""
    rng = np.random.default_rng(seed + 1)
    coarse = rng.uniform(-1.0, 1.0, (count, 3, resolution // 16, resolution // 16))
    smooth = coarse.repeat(16, axis=2).repeat(16, axis=3)
    return np.clip(smooth + rng.normal(0.0, 0.25, smooth.shape), -1.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class BenchModel:
    """Where :func:`ensure` wrote the model and its calibration batch."""

    onnx: Path
    calibration: Path


def ensure(out_dir: Path = CACHE, seed: int = SEED, images: int = CALIBRATION_IMAGES) -> BenchModel:
    """Write the model and its calibration batch into ``out_dir`` unless the same files are already there
    (building is deterministic, so the files are compared byte for byte)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = BenchModel(out_dir / f"mobilenetv2_{RESOLUTION}_seed{seed}.onnx",
                       out_dir / f"mobilenetv2_{RESOLUTION}_seed{seed}_calibration{images}.npy")
    data = build(seed).SerializeToString()
    if not paths.onnx.is_file() or paths.onnx.read_bytes() != data:
        paths.onnx.write_bytes(data)
    cal = calibration_images(images, seed)
    if not paths.calibration.is_file() or not np.array_equal(np.load(paths.calibration), cal):
        np.save(paths.calibration, cal)
    return paths


def main() -> int:
    """Write the model and calibration batch and print their paths."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=CACHE, help="output folder (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--images", type=int, default=CALIBRATION_IMAGES, help="calibration images (default: %(default)s)")
    args = ap.parse_args()
    m = ensure(args.out, args.seed, args.images)
    print(f"{m.onnx}\n{m.calibration}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
