"""An integer mcc graph as an ONNX model in QDQ form, for peers that cannot read the original file.

TVM's TFLite frontend fails on some real int8 models (person_detect: ``relax.dequantize: axis param is out of
range``), and onnxruntime reads only ONNX. ``mcc compare`` then runs those peers on this export of the same network:
the graph's int8 input and output as they are (NHWC, the same arrays mcc and TFLM take), every constant stored as
int8/int32 with a DequantizeLinear, every op computed in float by its standard ONNX operator (convolutions and
pooling through NCHW transposes), and every result quantized and dequantized with the graph's own scale and zero
point (QuantizeLinear → DequantizeLinear), the QDQ convention peers understand. Fused activations become a Clip
before the quantization. The export is what a converter would write; peers' float arithmetic inside each op
differs from TFLite's integer arithmetic, which is what the comparison measures.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from compiler.errors import UnsupportedOpError
from compiler.ir import Graph, Op, Value
from compiler.opdef import attr

NCHW = (0, 3, 1, 2)
NHWC = (0, 2, 3, 1)


class _Writer:
    def __init__(self) -> None:
        import onnx
        from onnx import helper

        self.onnx, self.helper = onnx, helper
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.names: dict[Value, str] = {}
        self.k = 0

    def fresh(self, hint: str) -> str:
        self.k += 1
        return f"{hint}_{self.k}"

    def init(self, arr: np.ndarray, hint: str) -> str:
        name = self.fresh(hint)
        self.inits.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(self, kind: str, inputs: list[str], hint: str, **attrs: Any) -> str:
        out = self.fresh(hint)
        self.nodes.append(self.helper.make_node(kind, inputs, [out], **attrs))
        return out

    def qparams(self, v: Value) -> tuple[str, str, int | None]:
        q = v.type.quant
        if q is None:
            raise UnsupportedOpError(f"export-onnx: %{v.name} is not quantized")
        scale = np.asarray(q.scale, np.float32)
        zp = np.asarray(q.zero_point, v.type.dtype.np)
        if q.axis is None:
            return self.init(scale.reshape(()), "scale"), self.init(zp.reshape(()), "zp"), None
        return self.init(scale, "scale"), self.init(zp, "zp"), q.axis

    def dequant(self, v: Value, data: np.ndarray | None = None) -> str:
        """A float tensor for ``v``: its constant dequantized (int8/int32 stored), or its activation."""
        if data is None:
            return self.names[v]
        s, z, axis = self.qparams(v)
        raw = self.init(data, "q")
        extra = {} if axis is None else {"axis": axis}
        return self.node("DequantizeLinear", [raw, s, z], "w", **extra)

    def qdq(self, x: str, v: Value, lo: float = -math.inf, hi: float = math.inf) -> str:
        """Quantize ``x`` with ``v``'s parameters (after an activation clip) and dequantize it again."""
        if math.isfinite(lo) or math.isfinite(hi):
            bounds = [self.init(np.asarray(b, np.float32), "clip") if math.isfinite(b) else "" for b in (lo, hi)]
            x = self.node("Clip", [x, *bounds], "clip")
        s, z, _ = self.qparams(v)
        q = self.node("QuantizeLinear", [x, s, z], "q")
        self.names[v] = self.node("DequantizeLinear", [q, s, z], "a")
        return q


def _bias(w: _Writer, op: Op, scale_in: float, n: int) -> str | None:
    if len(op.operands) < 3:
        return None
    b = op.operands[2].const_value
    wq = op.operands[1].type.quant
    assert b is not None and wq is not None
    scales = np.asarray(wq.scale, np.float64) * scale_in
    return w.init((np.asarray(b, np.float64) * np.broadcast_to(scales, (n,))).astype(np.float32), "bias")


def _window(w: _Writer, op: Op, x: str, kind: str, **attrs: Any) -> str:
    t = w.node("Transpose", [x], "nchw", perm=list(NCHW))
    pt, pl, pb, pr = attr(op, "pads")
    y = w.node(kind, [t, *attrs.pop("extra", [])], "win", pads=[pt, pl, pb, pr], strides=list(attr(op, "strides")),
               **attrs)
    return w.node("Transpose", [y], "nhwc", perm=list(NHWC))


def _act(op: Op) -> tuple[float, float]:
    return float(op.attrs.get("act_min", -math.inf)), float(op.attrs.get("act_max", math.inf))  # type: ignore[arg-type]


def _emit(w: _Writer, op: Op) -> str | None:
    """Add ``op``; returns the int8 tensor of its result when it is a graph output candidate."""
    k = op.kind
    ins = [v for v in op.operands]
    x = w.names.get(ins[0]) if ins else None
    if k in ("nn.conv2d", "nn.depthwise_conv2d"):
        wt = ins[1].const_value
        assert wt is not None and x is not None and ins[0].type.quant is not None
        if k == "nn.conv2d":
            ow = np.transpose(wt, (0, 3, 1, 2))  # OHWI -> OIHW
            group = attr(op, "groups")
            qaxis = 0
        else:
            c = ins[0].type.shape[3]
            ow = np.transpose(wt, (3, 0, 1, 2))  # [1, KH, KW, C*M] -> [C*M, 1, KH, KW]
            group = c
            qaxis = 3
        wq = ins[1].type.quant
        assert wq is not None
        s, z, _ = w.qparams(ins[1])
        raw = w.init(ow.astype(ins[1].type.dtype.np), "q")
        extra_axis = {} if wq.axis is None else {"axis": 0 if qaxis == 3 or wq.axis == 0 else wq.axis}
        wf = w.node("DequantizeLinear", [raw, s, z], "w", **extra_axis)
        n = ow.shape[0]
        bias = _bias(w, op, ins[0].type.quant.scale[0], n)
        y = _window(w, op, x, "Conv", extra=[wf, *([bias] if bias else [])], group=group,
                    dilations=list(attr(op, "dilations")), kernel_shape=list(ow.shape[2:]))
        return w.qdq(y, op.result, *_act(op))
    if k in ("nn.avg_pool2d", "nn.max_pool2d"):
        assert x is not None
        extra = {"count_include_pad": 0} if k == "nn.avg_pool2d" else {}
        y = _window(w, op, x, "AveragePool" if k == "nn.avg_pool2d" else "MaxPool",
                    kernel_shape=list(attr(op, "kernel")), **extra)
        return w.qdq(y, op.result, *_act(op))
    if k == "nn.fully_connected":
        wt = ins[1].const_value
        assert wt is not None and x is not None and ins[0].type.quant is not None
        wf = w.dequant(ins[1], wt)
        y = w.node("MatMul", [x, w.node("Transpose", [wf], "wt", perm=[1, 0])], "fc")
        bias = _bias(w, op, ins[0].type.quant.scale[0], wt.shape[0])
        if bias:
            y = w.node("Add", [y, bias], "fcb")
        return w.qdq(y, op.result, *_act(op))
    if k in ("nn.add", "nn.mul"):
        a, b = (w.dequant(v, v.const_value) if v.const_value is not None else w.names[v] for v in ins)
        return w.qdq(w.node("Add" if k == "nn.add" else "Mul", [a, b], "ew"), op.result, *_act(op))
    if k in ("nn.reshape", "nn.flatten"):
        assert x is not None
        shape = w.init(np.asarray(op.result.type.shape, np.int64), "shape")
        return w.qdq(w.node("Reshape", [x, shape], "reshape"), op.result)
    if k == "nn.mean":
        assert x is not None
        y = w.node("ReduceMean", [x], "mean", axes=list(attr(op, "axes")), keepdims=int(attr(op, "keepdims")))
        return w.qdq(y, op.result)
    if k == "nn.identity":
        assert x is not None
        return w.qdq(x, op.result)
    if k == "nn.softmax":
        assert x is not None
        return w.qdq(w.node("Softmax", [x], "softmax", axis=-1), op.result)
    if k in ("nn.relu", "nn.relu6", "nn.clamp"):
        assert x is not None
        lo, hi = {"nn.relu": (0.0, math.inf), "nn.relu6": (0.0, 6.0)}.get(
            k, (float(attr(op, "min")), float(attr(op, "max"))))
        return w.qdq(x, op.result, lo, hi)
    if k == "q.requantize":
        assert x is not None
        return w.qdq(x, op.result)
    raise UnsupportedOpError(f"export-onnx: {op.label}: no ONNX form for {k} yet")


def export_onnx(graph: Graph, path: Path) -> Path:
    """Write the integer ``graph`` (int8 NHWC inputs and outputs, as ``split_io`` leaves them) as a QDQ ONNX model."""
    w = _Writer()
    h = w.helper
    inputs = []
    for i, v in enumerate(graph.inputs):
        name = f"input_{i}"
        inputs.append(h.make_tensor_value_info(name, h.np_dtype_to_tensor_dtype(v.type.dtype.np), list(v.type.shape)))
        s, z, _ = w.qparams(v)
        w.names[v] = w.node("DequantizeLinear", [name, s, z], "in")
    quantized: dict[Value, str] = {}
    for op in graph.ops:
        if op.kind == "const":
            continue
        q = _emit(w, op)
        if q is not None:
            quantized[op.result] = q
    outputs = []
    for i, v in enumerate(graph.outputs):
        name = f"output_{i}"
        src = quantized.get(v)
        if src is None:
            raise UnsupportedOpError(f"export-onnx: output %{v.name} is not computed by an op")
        w.nodes.append(h.make_node("Identity", [src], [name]))
        outputs.append(h.make_tensor_value_info(name, h.np_dtype_to_tensor_dtype(v.type.dtype.np),
                                                list(v.type.shape)))
    model = h.make_model(h.make_graph(w.nodes, graph.name or "mcc", inputs, outputs, w.inits),
                         opset_imports=[h.make_opsetid("", 13)], producer_name="mcc export-onnx")
    model.ir_version = 8
    w.onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path
