"""The TFLite importer: a ``.tflite`` flatbuffer becomes an mcc graph of integer ops with TFLite/TFLM semantics.

``load_tflite(path)`` returns an :class:`~frontend.model.ImportedModel`. TFLite already stores what mcc's IR wants —
NHWC activations, OHWI conv weights (per-channel along axis 0), ``[1, KH, KW, C*M]`` depthwise weights (axis 3) and
``[N, K]`` fully-connected weights — so every tensor maps one to one (every ``perm`` is the identity) and value
names are the tensor names (made unique). A fully int8 model becomes integer IR ops directly; QUANTIZE and
DEQUANTIZE at float edges become ``q.quantize`` (``round_mode="half_away"``, as TFLite rounds), ``q.requantize``
(integer to integer) and ``q.dequantize``; constant buffers become ``const`` ops.

The file is read in two steps. :func:`_decode` copies the flatbuffer (through the ``tflite`` package's generated
readers) into plain records; any failure there means a corrupt or truncated file and is one :class:`TfliteImportError`
line. The :class:`_Importer` then builds IR from the records, one small handler per operator kind:

* CONV_2D, DEPTHWISE_CONV_2D: SAME/VALID padding becomes explicit pads as TFLite computes them (the odd pad goes at
  the end); fused activations NONE/RELU/RELU6/RELU_N1_TO_1 become ``act_min``/``act_max``.
* FULLY_CONNECTED: the input is reshaped to ``[rows, K]`` when it has another shape; ``keep_num_dims`` is honoured
  by reshaping the result to the output tensor's shape.
* AVERAGE_POOL_2D, MAX_POOL_2D, MEAN, ADD, MUL, PAD/PADV2, RESHAPE, SQUEEZE, CONCATENATION, SOFTMAX, LOGISTIC, TANH,
  HARD_SWISH, LOG_SOFTMAX (float32), RELU, RELU6, RESIZE_NEAREST_NEIGHBOR, TRANSPOSE map to the IR op of the same
  meaning.

Any other operator (LSTM, SVDF, CUSTOM, ...) raises :class:`~compiler.errors.UnsupportedOpError` naming the operator
index and name and listing the supported ones. Ops whose TFLM kernel ignores a quantization the IR op would honour
(RELU6 or a pool with different input and output quantization, CONCATENATION of differently quantized inputs) are
refused the same way rather than imported with other semantics. Only subgraph 0 is imported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
from tflite.AddOptions import AddOptions
from tflite.BuiltinOperator import BuiltinOperator
from tflite.ConcatenationOptions import ConcatenationOptions
from tflite.Conv2DOptions import Conv2DOptions
from tflite.DepthwiseConv2DOptions import DepthwiseConv2DOptions
from tflite.FullyConnectedOptions import FullyConnectedOptions
from tflite.Model import Model
from tflite.MulOptions import MulOptions
from tflite.Pool2DOptions import Pool2DOptions
from tflite.ReducerOptions import ReducerOptions
from tflite.ResizeNearestNeighborOptions import ResizeNearestNeighborOptions
from tflite.SoftmaxOptions import SoftmaxOptions

from compiler.errors import MccError, UnsupportedOpError
from compiler.ir import AttrValue, DType, Graph, QuantParams, TensorType, Value, const
from compiler.verifier import verify, verify_op
from frontend.model import ImportedModel, IOInfo

IDENTIFIER = b"TFL3"
"""The flatbuffer file identifier of TFLite schema v3 (bytes 4-8 of every .tflite file)."""

_OP_NAMES = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
_TYPES: dict[int, tuple[str, np.dtype | None]] = {
    0: ("FLOAT32", np.dtype("<f4")), 1: ("FLOAT16", np.dtype("<f2")), 2: ("INT32", np.dtype("<i4")),
    3: ("UINT8", np.dtype("u1")), 4: ("INT64", np.dtype("<i8")), 5: ("STRING", None), 6: ("BOOL", None),
    7: ("INT16", np.dtype("<i2")), 9: ("INT8", np.dtype("i1")), 10: ("FLOAT64", np.dtype("<f8"))}
"""TFLite ``TensorType`` codes: name and little-endian storage dtype (None: never numeric data)."""
_IR_DTYPES = {"FLOAT32": DType.FLOAT32, "INT8": DType.INT8, "UINT8": DType.UINT8, "INT16": DType.INT16,
              "INT32": DType.INT32}
_PADDING = {0: "SAME", 1: "VALID"}
_ACTIVATIONS: dict[int, tuple[str, float, float]] = {
    0: ("NONE", -math.inf, math.inf), 1: ("RELU", 0.0, math.inf), 2: ("RELU_N1_TO_1", -1.0, 1.0),
    3: ("RELU6", 0.0, 6.0)}
_ACT_NAMES = {4: "TANH", 5: "SIGN_BIT"}

_POOL_FIELDS = ("Padding", "StrideW", "StrideH", "FilterWidth", "FilterHeight", "FusedActivationFunction")
_OPTIONS: dict[str, tuple[type, tuple[str, ...]]] = {
    "CONV_2D": (Conv2DOptions, ("Padding", "StrideW", "StrideH", "FusedActivationFunction", "DilationWFactor",
                                "DilationHFactor")),
    "DEPTHWISE_CONV_2D": (DepthwiseConv2DOptions, ("Padding", "StrideW", "StrideH", "FusedActivationFunction",
                                                   "DilationWFactor", "DilationHFactor", "DepthMultiplier")),
    "FULLY_CONNECTED": (FullyConnectedOptions, ("FusedActivationFunction", "WeightsFormat", "KeepNumDims")),
    "AVERAGE_POOL_2D": (Pool2DOptions, _POOL_FIELDS),
    "MAX_POOL_2D": (Pool2DOptions, _POOL_FIELDS),
    "ADD": (AddOptions, ("FusedActivationFunction",)),
    "MUL": (MulOptions, ("FusedActivationFunction",)),
    "CONCATENATION": (ConcatenationOptions, ("Axis", "FusedActivationFunction")),
    "SOFTMAX": (SoftmaxOptions, ("Beta",)),
    "MEAN": (ReducerOptions, ("KeepDims",)),
    "RESIZE_NEAREST_NEIGHBOR": (ResizeNearestNeighborOptions, ("AlignCorners", "HalfPixelCenters")),
}
"""Operators with builtin options: the generated options class and the fields the importer reads."""


class TfliteImportError(MccError):
    """A .tflite file that cannot be read, or a tensor or operator mcc cannot represent."""


def load_tflite(path: str | Path) -> ImportedModel:
    """Import subgraph 0 of a ``.tflite`` file and verify the graph."""
    p = Path(path)
    if not p.is_file():
        raise TfliteImportError(f"no such TFLite file: {p}")
    model = _decode(p.read_bytes(), str(p))
    return _Importer(model, str(p)).run()


# -- padding -------------------------------------------------------------------------------------------------------
def same_pads(in_size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(begin, end) padding of TFLite's SAME scheme along one axis (``ComputePaddingHeightWidth``).

    The output has ``ceil(in / stride)`` positions; the total padding that needs is split with the smaller half
    first, so an odd total puts the extra element at the end.
    """
    out = (in_size + stride - 1) // stride
    effective = (kernel - 1) * dilation + 1
    total = max((out - 1) * stride + effective - in_size, 0)
    return total // 2, total - total // 2


def window_pads(padding: str, in_hw: Sequence[int], kernel_hw: Sequence[int], strides: Sequence[int],
                dilations: Sequence[int] = (1, 1)) -> tuple[int, int, int, int]:
    """Explicit ``(top, left, bottom, right)`` pads of a SAME or VALID window over an ``in_hw`` image."""
    if padding == "VALID":
        return 0, 0, 0, 0
    top, bottom = same_pads(in_hw[0], kernel_hw[0], strides[0], dilations[0])
    left, right = same_pads(in_hw[1], kernel_hw[1], strides[1], dilations[1])
    return top, left, bottom, right


# -- decoding ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Tensor:
    """One TFLite tensor as plain data; ``data`` is the constant buffer's contents (None for activations)."""

    index: int
    name: str
    shape: tuple[int, ...]
    type_name: str
    data: np.ndarray | None
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    quantized_dimension: int
    sparse: bool


@dataclass(frozen=True)
class _Operator:
    """One operator: its index, name (``CUSTOM:code`` for custom ops), tensor indices (-1 = absent) and options."""

    index: int
    name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict[str, Any]

    @property
    def label(self) -> str:
        return f"operator #{self.index} ({self.name})"

    def opt_input(self, i: int) -> int | None:
        """Tensor index of input ``i`` when present."""
        return self.inputs[i] if i < len(self.inputs) and self.inputs[i] >= 0 else None


@dataclass(frozen=True)
class _Decoded:
    tensors: tuple[_Tensor, ...]
    operators: tuple[_Operator, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    name: str


def _decode(data: bytes, where: str) -> _Decoded:
    """Copy subgraph 0 of the flatbuffer into plain records; a corrupt or truncated file is one clear error."""
    if len(data) < 8 or data[4:8] != IDENTIFIER:
        raise TfliteImportError(f"{where}: not a TFLite model (no '{IDENTIFIER.decode()}' flatbuffer identifier)")
    try:
        return _decode_model(Model.GetRootAs(data, 0), data)
    except MccError:
        raise
    except Exception as e:  # struct.error, IndexError, UnicodeDecodeError, ... from a damaged flatbuffer
        raise TfliteImportError(f"{where}: corrupt or truncated TFLite file ({type(e).__name__}: {e})") from None


def _check_len(n: int, data: bytes, what: str) -> int:
    if not 0 <= n <= len(data):
        raise TfliteImportError(f"{what} count {n} exceeds the file size")
    return n


def _decode_model(m: Model, data: bytes) -> _Decoded:
    if _check_len(m.SubgraphsLength(), data, "subgraph") < 1:
        raise TfliteImportError("the model has no subgraph")
    g = m.Subgraphs(0)
    buffers = [m.Buffers(i) for i in range(_check_len(m.BuffersLength(), data, "buffer"))]
    tensors = tuple(_decode_tensor(i, g.Tensors(i), buffers, data)
                    for i in range(_check_len(g.TensorsLength(), data, "tensor")))
    codes = []
    for i in range(_check_len(m.OperatorCodesLength(), data, "operator code")):
        oc = m.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        name = _OP_NAMES.get(code, f"BUILTIN_{code}")
        if name == "CUSTOM":
            custom = oc.CustomCode()
            name = f"CUSTOM:{custom.decode('utf-8', 'replace') if custom else '?'}"
        codes.append(name)
    ops = []
    for k in range(_check_len(g.OperatorsLength(), data, "operator")):
        op = g.Operators(k)
        name = codes[op.OpcodeIndex()]
        ins = tuple(int(x) for x in op.InputsAsNumpy()) if op.InputsLength() else ()
        outs = tuple(int(x) for x in op.OutputsAsNumpy()) if op.OutputsLength() else ()
        for t in (*ins, *outs):
            if t >= len(tensors) or t < -1:
                raise TfliteImportError(f"operator #{k} refers to tensor {t}; the subgraph has {len(tensors)}")
        ops.append(_Operator(k, name, ins, outs, _decode_options(name, op.BuiltinOptions())))
    ins = tuple(int(x) for x in g.InputsAsNumpy()) if g.InputsLength() else ()
    outs = tuple(int(x) for x in g.OutputsAsNumpy()) if g.OutputsLength() else ()
    if any(not 0 <= t < len(tensors) for t in (*ins, *outs)):
        raise TfliteImportError("a subgraph input or output refers to a tensor that does not exist")
    raw_name = g.Name()
    return _Decoded(tensors, tuple(ops), ins, outs, raw_name.decode("utf-8", "replace") if raw_name else "main")


def _decode_tensor(index: int, t: Any, buffers: list[Any], data: bytes) -> _Tensor:
    type_name, np_dtype = _TYPES.get(t.Type(), (f"TYPE_{t.Type()}", None))
    shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
    raw = t.Name()
    name = raw.decode("utf-8", "replace") if raw else f"t{index}"
    payload = None
    b = t.Buffer()
    if 0 < b < len(buffers):
        buf = buffers[b]
        if buf.Offset() > 1:  # a large model keeps the bytes after the flatbuffer
            raw_bytes = data[buf.Offset(): buf.Offset() + buf.Size()]
        elif buf.DataLength():
            raw_bytes = buf.DataAsNumpy().tobytes()
        else:
            raw_bytes = b""
        if raw_bytes:
            if np_dtype is None:
                raise TfliteImportError(f"tensor {index} ('{name}') holds constant {type_name} data")
            count = math.prod(shape)
            if len(raw_bytes) != count * np_dtype.itemsize:
                raise TfliteImportError(f"tensor {index} ('{name}'): buffer has {len(raw_bytes)} bytes, shape "
                                        f"{list(shape)} of {type_name} needs {count * np_dtype.itemsize}")
            payload = np.frombuffer(raw_bytes, dtype=np_dtype).reshape(shape).astype(np_dtype.newbyteorder("="))
    q = t.Quantization()
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()
    qdim = 0
    if q is not None:
        scale = tuple(float(s) for s in q.ScaleAsNumpy()) if q.ScaleLength() else ()
        zero_point = tuple(int(z) for z in q.ZeroPointAsNumpy()) if q.ZeroPointLength() else ()
        qdim = int(q.QuantizedDimension())
    return _Tensor(index, name, shape, type_name, payload, scale, zero_point, qdim, t.Sparsity() is not None)


def _empty_table(cls: type) -> Any:
    """An options object with no fields set, so every accessor returns the schema default."""
    b = flatbuffers.Builder(0)
    b.StartObject(0)
    b.Finish(b.EndObject())
    buf = b.Output()
    obj = cls()
    obj.Init(buf, flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0))
    return obj


def _decode_options(name: str, table: Any) -> dict[str, Any]:
    spec = _OPTIONS.get(name)
    if spec is None:
        return {}
    cls, fields = spec
    if table is None:
        obj = _empty_table(cls)
    else:
        obj = cls()
        obj.Init(table.Bytes, table.Pos)
    return {f: getattr(obj, f)() for f in fields}


# -- the importer --------------------------------------------------------------------------------------------------
Handler = Callable[["_Importer", _Operator], None]
_HANDLERS: dict[str, Handler] = {}


def _handles(*names: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for n in names:
            _HANDLERS[n] = fn
        return fn
    return register


def supported_ops() -> list[str]:
    """The TFLite operator names the importer handles."""
    return sorted(_HANDLERS)


class _Importer:
    def __init__(self, model: _Decoded, where: str) -> None:
        self.model = model
        self.where = where
        self.graph = Graph(model.name)
        self.values: dict[int, Value] = {}
        self.used: set[str] = set()

    def run(self) -> ImportedModel:
        for op in self.model.operators:
            if op.name not in _HANDLERS:
                raise UnsupportedOpError(f"{self.where}: {op.label} is not supported; mcc supports "
                                         f"{', '.join(supported_ops())}")
        in_infos = [self._add_input(i) for i in self.model.inputs]
        for op in self.model.operators:
            try:
                _HANDLERS[op.name](self, op)
            except UnsupportedOpError as e:
                raise UnsupportedOpError(f"{self.where}: {op.label}: {e}") from None
            except MccError as e:
                raise TfliteImportError(f"{self.where}: {op.label}: {e}") from None
        out_infos = [self._add_output(i) for i in self.model.outputs]
        verify(self.graph)
        return ImportedModel(self.graph, tuple(in_infos), tuple(out_infos))

    # -- tensors ---------------------------------------------------------------------------------------------
    def tensor(self, index: int) -> _Tensor:
        return self.model.tensors[index]

    def ir_type(self, t: _Tensor) -> TensorType:
        """The IR type of a tensor: shape, element type and (for 8/16-bit integers) its quantization."""
        dtype = _IR_DTYPES.get(t.type_name)
        if dtype is None:
            raise TfliteImportError(f"tensor '{t.name}' has element type {t.type_name}; mcc handles "
                                    f"{', '.join(_IR_DTYPES)}")
        if t.sparse:
            raise UnsupportedOpError(f"tensor '{t.name}' is sparse; mcc reads dense tensors only")
        quant = None
        if dtype in (DType.INT8, DType.UINT8, DType.INT16):
            if not t.scale:
                raise TfliteImportError(f"{t.type_name} tensor '{t.name}' has no quantization parameters")
            zps = t.zero_point or (0,) * len(t.scale)
            if len(zps) == 1 and len(t.scale) > 1:
                zps = zps * len(t.scale)
            if len(t.scale) == 1:  # quantized_dimension only matters with several scales
                quant = QuantParams.per_tensor(t.scale[0], zps[0])
            else:
                quant = QuantParams.per_channel(t.scale, zps, t.quantized_dimension)
        return TensorType(t.shape, dtype, quant)

    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self.used:
            name, i = f"{base}_{i}", i + 1
        self.used.add(name)
        return name

    def value(self, index: int) -> Value:
        """The IR value of tensor ``index``: an earlier result, a graph input, or a new ``const`` op."""
        if index in self.values:
            return self.values[index]
        t = self.tensor(index)
        if t.data is None:
            raise TfliteImportError(f"tensor '{t.name}' is read before any operator writes it")
        v = const(self.graph, t.data, self.ir_type(t), self.fresh(t.name))
        self.values[index] = v
        return v

    def const_ints(self, index: int, what: str) -> list[int]:
        """The integer contents of a constant tensor (axes, shapes, paddings, permutations)."""
        t = self.tensor(index)
        if t.data is None or t.type_name not in ("INT32", "INT64"):
            raise UnsupportedOpError(f"{what} (tensor '{t.name}') must be a constant int32 tensor")
        return [int(x) for x in t.data.reshape(-1)]

    def quant(self, index: int) -> QuantParams | None:
        return self.ir_type(self.tensor(index)).quant

    # -- emission --------------------------------------------------------------------------------------------
    def emit(self, kind: str, operands: Sequence[Value], attrs: dict[str, AttrValue], out: int | None,
             result: TensorType | None = None, name: str | None = None) -> Value:
        """Append an op whose result is tensor ``out`` (typed as in the file) or an intermediate of type ``result``.

        The op is verified at once, so a shape or quantization the IR op disagrees with names this operator.
        """
        if out is not None:
            t = self.tensor(out)
            result = self.ir_type(t)
            name = t.name
        assert result is not None and name is not None
        op = self.graph.create(kind, list(operands), [result], attrs, [self.fresh(name)])
        verify_op(op)
        if out is not None:
            self.values[out] = op.result
        return op.result

    def _add_input(self, index: int) -> IOInfo:
        t = self.tensor(index)
        ty = self.ir_type(t)
        if ty.dtype not in (DType.FLOAT32, DType.INT8, DType.UINT8, DType.INT16):
            raise TfliteImportError(f"graph input '{t.name}' is {t.type_name}; mcc takes float32 or quantized "
                                    "8/16-bit integer inputs")
        if ty.quant is not None and not ty.quant.is_per_tensor:
            raise TfliteImportError(f"graph input '{t.name}' is quantized per channel; mcc needs per-tensor")
        v = self.graph.add_input(ty, self.fresh(t.name))
        self.values[index] = v
        return IOInfo(str(v.name), t.shape, tuple(range(len(t.shape))), ty.dtype)

    def _add_output(self, index: int) -> IOInfo:
        t = self.tensor(index)
        v = self.value(index)
        if self.graph.is_output(v) or v.producer is None or v.producer.kind == "const":
            v = self.emit("nn.identity", [v], {}, None, v.type, t.name + "_copy")
        self.graph.outputs.append(v)
        return IOInfo(str(v.name), t.shape, tuple(range(len(t.shape))), v.type.dtype)


# -- helpers for handlers ----------------------------------------------------------------------------------------
def _activation(op: _Operator) -> dict[str, AttrValue]:
    """``act_min``/``act_max`` of a fused activation (none for NONE)."""
    code = int(op.options.get("FusedActivationFunction", 0))
    if code not in _ACTIVATIONS:
        raise UnsupportedOpError(f"fused activation {_ACT_NAMES.get(code, code)} is not supported "
                                 "(NONE, RELU, RELU6 and RELU_N1_TO_1 are)")
    _, lo, hi = _ACTIVATIONS[code]
    attrs: dict[str, AttrValue] = {}
    if math.isfinite(lo):
        attrs["act_min"] = lo
    if math.isfinite(hi):
        attrs["act_max"] = hi
    return attrs


def _padding(op: _Operator) -> str:
    code = int(op.options.get("Padding", 0))
    if code not in _PADDING:
        raise UnsupportedOpError(f"padding scheme {code} is not supported (SAME and VALID are)")
    return _PADDING[code]


def _require_int8_or_float(imp: _Importer, op: _Operator, *indices: int) -> None:
    """Input, weights and output are all int8 or all float32 (no int16 activations, no hybrid kernels)."""
    kinds = {imp.tensor(i).type_name for i in indices}
    if kinds == {"INT8", "FLOAT32"}:
        raise UnsupportedOpError("hybrid kernels (float activations, int8 weights) are not supported; convert the "
                                 "model with full integer quantization")
    for i in indices:
        t = imp.tensor(i)
        if t.type_name not in ("INT8", "FLOAT32"):
            raise UnsupportedOpError(f"tensor '{t.name}' is {t.type_name}; this operator is supported for int8 "
                                     "(or float32) tensors")


def _bias(imp: _Importer, op: _Operator, index: int | None) -> list[Value]:
    if index is None:
        return []
    t = imp.tensor(index)
    if t.type_name not in ("INT32", "FLOAT32"):
        raise UnsupportedOpError(f"bias '{t.name}' is {t.type_name}; int32 (or float32) biases are supported")
    if index in imp.values:
        return [imp.values[index]]
    if t.data is None:
        raise UnsupportedOpError(f"bias '{t.name}' must be a constant")
    dtype = _IR_DTYPES[t.type_name]
    v = const(imp.graph, t.data, TensorType(t.shape, dtype), imp.fresh(t.name))  # int32 biases carry no quant
    imp.values[index] = v
    return [v]


def _same_quant(imp: _Importer, op: _Operator, a: int, b: int, why: str) -> None:
    if imp.quant(a) != imp.quant(b):
        raise UnsupportedOpError(f"input and output quantization differ; {why}")


# -- handlers ------------------------------------------------------------------------------------------------------
@_handles("CONV_2D", "DEPTHWISE_CONV_2D")
def _conv(imp: _Importer, op: _Operator) -> None:
    x_i, w_i, out = op.inputs[0], op.inputs[1], op.outputs[0]
    _require_int8_or_float(imp, op, x_i, w_i, out)
    x, w = imp.value(x_i), imp.value(w_i)
    o = op.options
    strides = (int(o["StrideH"]), int(o["StrideW"]))
    dilations = (int(o["DilationHFactor"]), int(o["DilationWFactor"]))
    kernel = (w.type.shape[1], w.type.shape[2])
    attrs: dict[str, AttrValue] = {
        "strides": strides, "dilations": dilations,
        "pads": window_pads(_padding(op), x.type.shape[1:3], kernel, strides, dilations), **_activation(op)}
    if op.name == "CONV_2D":
        kind = "nn.conv2d"
        if w.type.shape[3] and x.type.shape[3] % w.type.shape[3] == 0 and x.type.shape[3] != w.type.shape[3]:
            attrs["groups"] = x.type.shape[3] // w.type.shape[3]
    else:
        kind = "nn.depthwise_conv2d"
        attrs["depth_multiplier"] = max(w.type.shape[3] // max(x.type.shape[3], 1), 1)
    imp.emit(kind, [x, w, *_bias(imp, op, op.opt_input(2))], attrs, out)


@_handles("FULLY_CONNECTED")
def _fully_connected(imp: _Importer, op: _Operator) -> None:
    x_i, w_i, out = op.inputs[0], op.inputs[1], op.outputs[0]
    _require_int8_or_float(imp, op, x_i, w_i, out)
    if int(op.options.get("WeightsFormat", 0)) != 0:
        raise UnsupportedOpError("only the DEFAULT weights format is supported")
    x, w = imp.value(x_i), imp.value(w_i)
    k = w.type.shape[1]
    if x.type.num_elements % max(k, 1):
        raise TfliteImportError(f"input of {x.type.num_elements} elements does not split into rows of K = {k}")
    rows = x.type.num_elements // k
    if x.type.shape != (rows, k):
        x = imp.emit("nn.reshape", [x], {"shape": (rows, k)}, None, x.type.with_shape((rows, k)),
                     f"{imp.tensor(x_i).name}_rows")
    out_t = imp.ir_type(imp.tensor(out))
    operands = [x, w, *_bias(imp, op, op.opt_input(2))]
    if out_t.shape == (rows, w.type.shape[0]):
        imp.emit("nn.fully_connected", operands, _activation(op), out)
        return
    flat = out_t.with_shape((rows, w.type.shape[0]))
    y = imp.emit("nn.fully_connected", operands, _activation(op), None, flat, f"{imp.tensor(out).name}_rows")
    imp.emit("nn.reshape", [y], {"shape": out_t.shape}, out)


@_handles("AVERAGE_POOL_2D", "MAX_POOL_2D")
def _pool(imp: _Importer, op: _Operator) -> None:
    x_i, out = op.inputs[0], op.outputs[0]
    x = imp.value(x_i)
    if x.type.is_quantized:
        _same_quant(imp, op, x_i, out, "TFLM's pooling kernels do not rescale")
    o = op.options
    kernel = (int(o["FilterHeight"]), int(o["FilterWidth"]))
    strides = (int(o["StrideH"]), int(o["StrideW"]))
    attrs: dict[str, AttrValue] = {"kernel": kernel, "strides": strides,
                                   "pads": window_pads(_padding(op), x.type.shape[1:3], kernel, strides),
                                   **_activation(op)}
    imp.emit("nn.avg_pool2d" if op.name == "AVERAGE_POOL_2D" else "nn.max_pool2d", [x], attrs, out)


@_handles("ADD", "MUL")
def _binary(imp: _Importer, op: _Operator) -> None:
    a, b = imp.value(op.inputs[0]), imp.value(op.inputs[1])
    imp.emit("nn.add" if op.name == "ADD" else "nn.mul", [a, b], _activation(op), op.outputs[0])


@_handles("MEAN")
def _mean(imp: _Importer, op: _Operator) -> None:
    x = imp.value(op.inputs[0])
    rank = x.type.rank
    axes = tuple(sorted({a % rank for a in imp.const_ints(op.inputs[1], "the reduction axes")}))
    imp.emit("nn.mean", [x], {"axes": axes, "keepdims": bool(op.options["KeepDims"])}, op.outputs[0])


@_handles("PAD", "PADV2")
def _pad(imp: _Importer, op: _Operator) -> None:
    x_i, out = op.inputs[0], op.outputs[0]
    x = imp.value(x_i)
    flat = imp.const_ints(op.inputs[1], "the paddings")
    rank = x.type.rank
    if len(flat) != 2 * rank:
        raise TfliteImportError(f"paddings hold {len(flat)} values; a rank-{rank} input needs {2 * rank}")
    pads = tuple(flat[0::2]) + tuple(flat[1::2])
    value = 0.0
    c_i = op.opt_input(2) if op.name == "PADV2" else None
    if c_i is not None:
        c = imp.tensor(c_i)
        if c.data is None or c.data.size != 1:
            raise UnsupportedOpError("the pad value must be a constant scalar")
        raw = c.data.reshape(-1)[0]
        q = imp.quant(out)
        if c.type_name == "FLOAT32":
            value = float(raw)
        elif q is not None and c.type_name == imp.tensor(out).type_name:
            value = (int(raw) - q.zero_point[0]) * q.scale[0]  # TFLM pads with the stored integer itself
        else:
            raise UnsupportedOpError(f"a {c.type_name} pad value for a {imp.tensor(out).type_name} tensor")
    imp.emit("nn.pad", [x], {"pads": pads, "value": value}, out)


@_handles("RESHAPE", "SQUEEZE")
def _reshape(imp: _Importer, op: _Operator) -> None:
    x = imp.value(op.inputs[0])
    shape = imp.tensor(op.outputs[0]).shape
    if math.prod(shape) != x.type.num_elements:
        raise TfliteImportError(f"output shape {list(shape)} does not hold the input's {x.type.num_elements} "
                                "elements")
    imp.emit("nn.reshape", [x], {"shape": shape}, op.outputs[0])


@_handles("CONCATENATION")
def _concat(imp: _Importer, op: _Operator) -> None:
    out = op.outputs[0]
    if _activation(op):
        raise UnsupportedOpError("a fused activation on CONCATENATION is not supported")
    xs = [imp.value(i) for i in op.inputs]
    for i in op.inputs:
        if xs[0].type.is_quantized:
            _same_quant(imp, op, i, out, "TFLM's int8 concatenation requires equal quantization")
    imp.emit("nn.concat", xs, {"axis": int(op.options["Axis"])}, out)


@_handles("SOFTMAX")
def _softmax(imp: _Importer, op: _Operator) -> None:
    imp.emit("nn.softmax", [imp.value(op.inputs[0])], {"axis": -1, "beta": float(op.options["Beta"])},
             op.outputs[0])


@_handles("LOG_SOFTMAX")
def _log_softmax(imp: _Importer, op: _Operator) -> None:
    x = imp.value(op.inputs[0])
    if x.type.dtype is not DType.FLOAT32:
        raise UnsupportedOpError(f"LOG_SOFTMAX on {x.type.dtype.value} is not supported (float32 is)")
    imp.emit("nn.log_softmax", [x], {"axis": -1}, op.outputs[0])


_UNARY = {"LOGISTIC": "nn.sigmoid", "TANH": "nn.tanh", "HARD_SWISH": "nn.hard_swish", "RELU": "nn.relu",
          "RELU6": "nn.relu6"}


@_handles(*_UNARY)
def _unary(imp: _Importer, op: _Operator) -> None:
    x_i, out = op.inputs[0], op.outputs[0]
    x = imp.value(x_i)
    if op.name == "RELU6" and x.type.is_quantized:
        _same_quant(imp, op, x_i, out, "TFLM's RELU6 clamps without rescaling")
    imp.emit(_UNARY[op.name], [x], {}, out)


@_handles("QUANTIZE")
def _quantize(imp: _Importer, op: _Operator) -> None:
    x = imp.value(op.inputs[0])
    if x.type.dtype.is_float:
        imp.emit("q.quantize", [x], {"round_mode": "half_away"}, op.outputs[0])
    else:
        imp.emit("q.requantize", [x], {}, op.outputs[0])


@_handles("DEQUANTIZE")
def _dequantize(imp: _Importer, op: _Operator) -> None:
    imp.emit("q.dequantize", [imp.value(op.inputs[0])], {}, op.outputs[0])


@_handles("RESIZE_NEAREST_NEIGHBOR")
def _resize_nearest(imp: _Importer, op: _Operator) -> None:
    size = imp.const_ints(op.inputs[1], "the output size")
    if len(size) != 2:
        raise TfliteImportError(f"the output size must hold 2 values, got {size}")
    attrs: dict[str, AttrValue] = {"size": tuple(size), "align_corners": bool(op.options["AlignCorners"]),
                                   "half_pixel_centers": bool(op.options["HalfPixelCenters"])}
    imp.emit("nn.resize_nearest", [imp.value(op.inputs[0])], attrs, op.outputs[0])


@_handles("TRANSPOSE")
def _transpose(imp: _Importer, op: _Operator) -> None:
    x = imp.value(op.inputs[0])
    perm = tuple(p % max(x.type.rank, 1) for p in imp.const_ints(op.inputs[1], "the permutation"))
    imp.emit("nn.transpose", [x], {"perm": perm}, op.outputs[0])


__all__ = ["IDENTIFIER", "TfliteImportError", "load_tflite", "same_pads", "supported_ops", "window_pads"]
