"""An :class:`~nas.space.Arch` as an int8 mcc graph, built directly (no ONNX, no training).

The graph is what a quantized export of the same network looks like after mcc's import: NHWC int8 activations with
per-tensor scales, int8 OHWI weights with per-channel scales (zero point 0), int32 biases, ReLU6 fused into the
convolutions as their clamp, hard-swish as ``nn.hard_swish``, SE as mean → 1x1 conv (ReLU) → 1x1 conv →
``nn.hard_sigmoid`` → ``nn.mul``, residual ``nn.add``. Weight values are random (seeded, cached per shape): peak
SRAM, flash and MACs depend only on the shapes and the quantization parameters, which are plausible and seeded. Every
layer gets its own values (seeded by its name and shape): the C lowering stores equal constant arrays once, and a
trained network has no two equal layers, so weights shared by shape would make flash look smaller than it will be;
for the same reason projections, SE gates' inputs and residual sums each get their own output scale.
"""

from __future__ import annotations

import functools
import math
import zlib

import numpy as np

from compiler.ir import DType, Graph, QuantParams, TensorType, Value, const
from nas.space import Arch, MBConv

RELU6 = (0.0, 6.0)
RELU6_Q = (6.0 / 255.0, -128)
"""Scale and zero point of a ReLU6 result spanning [0, 6]."""
LINEAR_Q = (0.05, 0)
HSWISH_Q = (0.03, -115)
"""hard-swish results span [-0.375, ~7]."""
SIGMOID_Q = (1.0 / 256.0, -128)


@functools.lru_cache(maxsize=4096)
def _weights(shape: tuple[int, ...], dtype: str, layer: str = "") -> np.ndarray:
    """Random int8 weights (or int32 biases) of the layer named ``layer``, the same in every graph (seeded by the
    shape and the name)."""
    rng = np.random.default_rng([*shape, 7, zlib.crc32(layer.encode())])
    if dtype == "int8":
        arr = rng.integers(-127, 128, shape, dtype=np.int8)
    else:
        arr = rng.integers(-2000, 2000, shape, dtype=np.int32)
    arr.flags.writeable = False
    return arr


def _own_scale(q: tuple[float, int], name: str) -> tuple[float, int]:
    """``q`` with its scale moved by a factor in [0.8, 1.25) seeded by the layer's name: calibrated linear outputs
    (projections, residual sums) each have their own range, and the C lowering shares equal tables (an add's two
    input tables, for instance), so one scale for all of them would make flash look smaller than it will be. The zero
    point moves by up to 10 steps likewise (an add's table of its larger-scale input depends on nothing else)."""
    h = zlib.crc32(name.encode())
    return q[0] * (0.8 + 0.45 * (h % 1000) / 1000), int(np.clip(q[1] + (h >> 10) % 21 - 10, -128, 127))


def _q8(shape: tuple[int, ...], q: tuple[float, int]) -> TensorType:
    return TensorType(shape, DType.INT8, QuantParams.per_tensor(q[0], q[1]))


class _Builder:
    def __init__(self, arch: Arch, seed: int) -> None:
        self.arch = arch
        self.rng = np.random.default_rng(seed)
        self.g = Graph("nas")

    def scales(self, n: int) -> list[float]:
        return [float(s) for s in self.rng.uniform(0.002, 0.02, n)]

    def conv(self, x: Value, c_out: int, k: int, stride: int, name: str, out_q: tuple[float, int],
             act: tuple[float, float] | None = None, depthwise: bool = False) -> Value:
        """A conv/depthwise op with 'same' padding (TF/PyTorch symmetric padding ``k // 2``)."""
        _, h, w, c_in = x.type.shape
        pad = k // 2
        oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        if depthwise:
            wshape, axis, kind, c_out = (1, k, k, c_in), 3, "nn.depthwise_conv2d", c_in
        else:
            wshape, axis, kind = (c_out, k, k, c_in), 0, "nn.conv2d"
        wq = QuantParams.per_channel(self.scales(c_out), [0] * c_out, axis)
        wv = const(self.g, _weights(wshape, "int8", name), TensorType(wshape, DType.INT8, wq), f"{name}_w")
        bv = const(self.g, _weights((c_out,), "int32", name), TensorType((c_out,), DType.INT32), f"{name}_b")
        attrs: dict = {"strides": (stride, stride), "pads": (pad, pad, pad, pad)}
        if act is not None:
            attrs["act_min"], attrs["act_max"] = act
        return self.g.create(kind, [x, wv, bv], [_q8((1, oh, ow, c_out), out_q)], attrs, [name]).result

    def activate(self, x: Value, c_out: int, k: int, stride: int, name: str, hswish: bool,
                 depthwise: bool = False) -> Value:
        """conv + ReLU6 (fused) or conv + hard-swish."""
        if not hswish:
            return self.conv(x, c_out, k, stride, name, RELU6_Q, RELU6, depthwise)
        y = self.conv(x, c_out, k, stride, name, LINEAR_Q, None, depthwise)
        return self.g.create("nn.hard_swish", [y], [_q8(y.type.shape, HSWISH_Q)], {}, [f"{name}_hs"]).result

    def se(self, x: Value, blk: MBConv) -> Value:
        q = x.type.quant
        assert q is not None
        xq = (q.scale[0], q.zero_point[0])
        m = self.g.create("nn.mean", [x], [_q8((1, 1, 1, blk.mid), xq)], {"axes": (1, 2), "keepdims": True},
                          [f"{blk.name}_se_pool"]).result
        r = self.conv(m, blk.se_channels, 1, 1, f"{blk.name}_se_reduce", (0.02, -128), (0.0, math.inf))
        e = self.conv(r, blk.mid, 1, 1, f"{blk.name}_se_expand", _own_scale(LINEAR_Q, f"{blk.name}_se_expand"))
        gate = self.g.create("nn.hard_sigmoid", [e], [_q8(e.type.shape, SIGMOID_Q)],
                             {"alpha": 1.0 / 6.0, "beta": 0.5}, [f"{blk.name}_se_gate"]).result
        return self.g.create("nn.mul", [x, gate], [_q8(x.type.shape, xq)], {}, [f"{blk.name}_se"]).result

    def block(self, x: Value, blk: MBConv) -> Value:
        y = x
        if blk.has_expand:
            y = self.activate(y, blk.mid, 1, 1, f"{blk.name}_expand", blk.hswish)
        y = self.activate(y, blk.mid, blk.kernel, blk.stride, f"{blk.name}_dw", blk.hswish, depthwise=True)
        if blk.se:
            y = self.se(y, blk)
        y = self.conv(y, blk.c_out, 1, 1, f"{blk.name}_project", _own_scale(LINEAR_Q, f"{blk.name}_project"))
        if blk.residual:
            y = self.g.create("nn.add", [x, y], [_q8(y.type.shape, _own_scale((0.06, 0), f"{blk.name}_add"))], {},
                              [f"{blk.name}_add"]).result
        return y

    def build(self) -> Graph:
        a = self.arch
        x = self.g.add_input(_q8((1, a.resolution, a.resolution, a.in_channels), (1.0 / 255.0, -128)), "image")
        y = self.activate(x, a.channels(a.stem_width), 3, a.stem_stride, "stem", False)
        for blk in a.blocks():
            y = self.block(y, blk)
        y = self.activate(y, a.head_channels, 1, 1, "head", False)
        pooled = self.g.create("nn.mean", [y], [_q8((1, a.head_channels), RELU6_Q)],
                               {"axes": (1, 2), "keepdims": False}, ["pool"]).result
        wq = QuantParams.per_channel(self.scales(a.num_classes), [0] * a.num_classes, 0)
        wshape = (a.num_classes, a.head_channels)
        wv = const(self.g, _weights(wshape, "int8", "fc"), TensorType(wshape, DType.INT8, wq), "fc_w")
        bv = const(self.g, _weights((a.num_classes,), "int32", "fc"), TensorType((a.num_classes,), DType.INT32), "fc_b")
        logits = self.g.create("nn.fully_connected", [pooled, wv, bv], [_q8((1, a.num_classes), (0.1, 0))], {},
                               ["logits"]).result
        self.g.outputs = [logits]
        return self.g


def to_graph(arch: Arch, seed: int = 0) -> Graph:
    """The int8 graph of ``arch`` (quantization parameters seeded by ``seed``)."""
    arch.validate()
    return _Builder(arch, seed).build()
