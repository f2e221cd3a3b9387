"""The printer of the textual IR (``.mir``): one generic syntax for every op kind.

``frontend.mir.parse(print_graph(g))`` rebuilds ``g`` exactly (names, types, attributes, constants), and printing
the result again gives the same text. The syntax is described in ``docs/ir.md``; in short::

    graph @net(%x: tensor<1x8x8x3xi8, scale=0.5, zp=-128>) {
      %w = const() {value = dense<"0x0102...">} : tensor<4x3x3x3xi8, scale=[...], zp=[...], axis=0>
      %y = nn.conv2d(%x, %w) {strides = [2, 2]} : tensor<1x4x4x4xi8, scale=0.05, zp=-3>
      return %y
    }

The printer never fails on a graph it is given, even an invalid one (reproducers of failing passes go through it):
the parser and the verifier report what is wrong.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

from compiler.ir import DenseAttr, DType, Graph, Op, TensorType, Value
from compiler.opdef import scratch_bytes

BARE_NAME = re.compile(r"[A-Za-z0-9_.$\-]+")
"""SSA and graph names that print without quotes (``%x``, ``%0``, ``%conv.1``); others print as ``%"..."``."""

ATTR_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
"""Attribute names (and op kinds) that print without quotes."""

KEYWORDS = frozenset({"graph", "return", "tensor", "dense", "dense_resource"})
"""Words the lexer reserves; attribute names spelled like them are quoted."""

_CANONICAL_NAN32 = np.float32(np.nan).view(np.uint32)


def print_graph(graph: Graph, *, inline_limit: int = 16, resources: dict[str, np.ndarray] | None = None,
                resource_min_bytes: int = 0) -> str:
    """Render ``graph`` as canonical ``.mir`` text (ending with a newline).

    Dense tensors with at most ``inline_limit`` elements print inline (``dense<[1, 2]>``), larger ones as hex
    (``dense<"0x0102">``). When ``resources`` is given, tensors above the limit and above ``resource_min_bytes``
    bytes are stored in it under a unique key (the SSA name) and print as ``dense_resource<"key">``.
    """
    names = _Namer(graph)
    dense = _DenseFormatter(inline_limit, resources, resource_min_bytes)
    params = ", ".join(f"{names.ref(v)}: {format_type(v.type)}{_placement([v])}" for v in graph.inputs)
    arena = f" arena {graph.arena_bytes}" if graph.arena_bytes is not None else ""
    lines = [f"graph @{_quote_name(graph.name)}({params}){arena} {{"]
    for op in graph.ops:
        lines.append("  " + _format_op(op, names, dense))
    outs = ", ".join(names.ref(v) for v in graph.outputs)
    lines.append(f"  return {outs}" if outs else "  return")
    lines.append("}")
    return "\n".join(lines) + "\n"


def format_type(t: TensorType) -> str:
    """``tensor<1x8x8x3xi8, scale=0.5, zp=-1>``: shape, element type, quantization, layout."""
    body = "x".join([*(str(d) for d in t.shape), t.dtype.value])
    parts = [body]
    q = t.quant
    if q is not None:
        if q.axis is None:
            parts += [f"scale={_format_float32(np.float32(q.scale[0]))}", f"zp={int(q.zero_point[0])}"]
        else:
            parts += [f"scale=[{', '.join(_format_float32(np.float32(s)) for s in q.scale)}]",
                      f"zp=[{', '.join(str(int(z)) for z in q.zero_point)}]", f"axis={int(q.axis)}"]
    if t.layout is not None:
        parts.append(f"layout={_quote(t.layout)}")
    return f"tensor<{', '.join(parts)}>"


def format_attr(value: Any) -> str:
    """One attribute value as text: ``-3``, ``0.5``, ``true``, ``"s"``, ``[1, 2]``, ``dense<[1, 2]> : tensor<2xi8>``."""
    return _format_value(value, None, _DenseFormatter(16, None, 0), "")


# -- names -------------------------------------------------------------------------------------------------------
def _quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=True)


def _quote_name(name: str) -> str:
    return name if BARE_NAME.fullmatch(name) else _quote(name)


class _Namer:
    """Assigns every value a unique printed name, keeping the value's own name whenever it can.

    Unnamed values get the smallest free ``0, 1, ...``; a repeated name gets the smallest free ``name_1, name_2,
    ...``. Names given to values later in the graph are never taken, so the result is deterministic.
    """

    def __init__(self, graph: Graph) -> None:
        self._taken = {v.name for v in graph.values() if v.name is not None}
        self._used: set[str] = set()
        self._names: dict[int, str] = {}
        self._counter = 0
        for v in graph.values():
            self.name(v)

    def _free(self, s: str) -> bool:
        return s not in self._taken and s not in self._used

    def name(self, v: Value) -> str:
        """The printed (unique) name of ``v``, without the ``%``."""
        got = self._names.get(id(v))
        if got is not None:
            return got
        n = v.name
        if n is None:
            while not self._free(str(self._counter)):
                self._counter += 1
            n = str(self._counter)
        elif n in self._used:
            k = 1
            while not self._free(f"{n}_{k}"):
                k += 1
            n = f"{n}_{k}"
        self._used.add(n)
        self._names[id(v)] = n
        return n

    def ref(self, v: Value) -> str:
        """``%name`` or ``%"quoted name"``."""
        return "%" + _quote_name(self.name(v))


# -- ops and attributes ------------------------------------------------------------------------------------------
def _format_op(op: Op, names: _Namer, dense: _DenseFormatter) -> str:
    head = ""
    if op.results:
        head = ", ".join(names.ref(r) for r in op.results) + " = "
    text = f"{head}{op.kind}({', '.join(names.ref(v) for v in op.operands)})"
    implied = op.results[0].type if op.kind == "const" and op.results else None
    base = names.name(op.results[0]) if op.results else op.kind
    if op.attrs:
        items = []
        for key in sorted(op.attrs):
            rkey = base if op.kind == "const" else f"{base}.{key}"
            items.append(f"{_format_key(key)} = {_format_value(op.attrs[key], implied, dense, rkey)}")
        text += " {" + ", ".join(items) + "}"
    if op.results:
        text += " : " + ", ".join(format_type(r.type) for r in op.results) + _placement(op.results)
    if op.scratch_offset is not None:
        text += f" scratch {scratch_bytes(op)} at {op.scratch_offset}"
    return text


def _placement(values: list[Value]) -> str:
    """`` at OFFSET[, OFFSET…]`` for values placed in the arena (constants and unplanned graphs print nothing)."""
    if not values or any(v.offset is None for v in values):
        return ""
    return " at " + ", ".join(str(v.offset) for v in values)


def _format_key(key: str) -> str:
    return key if ATTR_KEY.fullmatch(key) and key not in KEYWORDS else _quote(key)


def _format_float(x: float | np.floating[Any]) -> str:
    return repr(float(x))  # 'inf', '-inf', 'nan', '-0.0', '1e-05': all parse back exactly


def _format_value(value: Any, implied: TensorType | None, dense: _DenseFormatter, key: str) -> str:
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return _format_float(value)
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, tuple | list):
        if any(isinstance(x, float | np.floating) for x in value):
            return "[" + ", ".join(_format_float(x) for x in value) + "]"
        return "[" + ", ".join(_format_value(x, None, dense, key) for x in value) + "]"
    if isinstance(value, DenseAttr):
        return dense.format(value.array, implied, key)
    if isinstance(value, np.ndarray):
        return dense.format(value, implied, key)
    return _quote(repr(value))  # not an attribute value the IR allows; the verifier will say so


# -- dense tensors -----------------------------------------------------------------------------------------------
def dtype_name(dtype: np.dtype) -> str:
    """The ``.mir`` element-type name of a NumPy dtype (``i8``, ``f32``; ``f64`` etc. for unsupported ones)."""
    try:
        return DType.from_np(dtype).value
    except KeyError:
        dt = np.dtype(dtype)
        return f"{dt.kind}{dt.itemsize * 8}" if dt.kind in "iuf" else dt.name


class _DenseFormatter:
    def __init__(self, inline_limit: int, resources: dict[str, np.ndarray] | None, min_bytes: int) -> None:
        self.inline_limit = inline_limit
        self.resources = resources
        self.min_bytes = min_bytes

    def format(self, arr: np.ndarray, implied: TensorType | None, key: str) -> str:
        """``dense<...>`` for ``arr``, with ``: tensor<...>`` unless ``implied`` (a const's type) matches it."""
        arr = np.asarray(arr)
        dt = dtype_name(arr.dtype)
        if implied is not None and tuple(implied.shape) == arr.shape and implied.dtype.value == dt:
            suffix = ""
        else:
            suffix = f" : tensor<{'x'.join([*(str(d) for d in arr.shape), dt])}>"
        if arr.size <= self.inline_limit and _inline_ok(arr):
            return f"dense<[{', '.join(_format_elements(arr))}]>{suffix}"
        if self.resources is not None and arr.size > self.inline_limit and arr.nbytes > self.min_bytes:
            k, i = key, 0
            while k in self.resources:
                i += 1
                k = f"{key}_{i}"
            self.resources[k] = np.array(arr)
            return f"dense_resource<{_quote(k)}>{suffix}"
        data = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
        return f'dense<"0x{data.hex()}">{suffix}'


def _inline_ok(arr: np.ndarray) -> bool:
    """Inline lists hold ints and float32 values exactly, except NaNs with a sign or payload (those print as hex)."""
    if arr.dtype.kind in "iu":
        return True
    if arr.dtype != np.float32:
        return False
    nan = np.isnan(arr)
    return not nan.any() or bool((arr[nan].view(np.uint32) == _CANONICAL_NAN32).all())


def _format_elements(arr: np.ndarray) -> list[str]:
    flat = arr.reshape(-1)
    if arr.dtype.kind in "iu":
        return [str(int(x)) for x in flat]
    return [_format_float32(x) for x in flat]


def _format_float32(x: np.float32) -> str:
    """The shortest text that reads back (through a Python float) as exactly ``x``."""
    if math.isnan(x) or math.isinf(x):
        return repr(float(x))
    s = str(x)
    if np.float32(float(s)).view(np.uint32) == x.view(np.uint32):
        return s
    return repr(float(x))
