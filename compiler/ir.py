"""The graph IR: types, attributes, values, ops and graphs.

Types and attributes are immutable (frozen, slotted dataclasses or plain immutable Python values); values, ops and
graphs are mutable nodes compared by identity. Every value knows its producer and its uses, so
:meth:`Graph.replace_all_uses` is safe and cheap.

Attribute values are one of: ``int``, ``float``, ``bool``, ``str``, a tuple of ints or floats, or
:class:`DenseAttr` (a read-only NumPy array). Each op kind declares its attributes and their kinds in the op
registry (:mod:`compiler.opdef`); the verifier checks them.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from compiler.errors import VerifyError


class DType(enum.Enum):
    """Element types of tensors."""

    INT8 = "i8"
    UINT8 = "u8"
    INT16 = "i16"
    INT32 = "i32"
    FLOAT32 = "f32"

    @property
    def np(self) -> np.dtype:
        """The matching NumPy dtype."""
        return np.dtype(_NP_DTYPES[self])

    @property
    def is_float(self) -> bool:
        """True for floating-point element types."""
        return self is DType.FLOAT32

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        return self.np.itemsize

    @property
    def qmin(self) -> int:
        """Smallest representable integer (integer types only)."""
        return int(np.iinfo(self.np).min)

    @property
    def qmax(self) -> int:
        """Largest representable integer (integer types only)."""
        return int(np.iinfo(self.np).max)

    @classmethod
    def from_np(cls, dtype: Any) -> DType:
        """Map a NumPy dtype to a :class:`DType`; raises ``KeyError`` for unsupported ones."""
        dt = np.dtype(dtype)
        for k, v in _NP_DTYPES.items():
            if np.dtype(v) == dt:
                return k
        raise KeyError(f"unsupported element type {dt}")


_NP_DTYPES = {
    DType.INT8: "int8",
    DType.UINT8: "uint8",
    DType.INT16: "int16",
    DType.INT32: "int32",
    DType.FLOAT32: "float32",
}


@dataclass(frozen=True, slots=True)
class QuantParams:
    """Affine quantization ``real = scale * (q - zero_point)``.

    Per-tensor when ``axis`` is None (one scale, one zero point), per-channel along ``axis`` otherwise.
    Scales are rounded to float32 on construction (TFLite and ONNX store them as float32) and kept as Python
    floats holding those float32 values.
    """

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int | None = None

    def __post_init__(self) -> None:
        with np.errstate(over="ignore"):
            object.__setattr__(self, "scale", tuple(float(np.float32(s)) for s in self.scale))
        object.__setattr__(self, "zero_point", tuple(int(z) for z in self.zero_point))
        if len(self.scale) != len(self.zero_point):
            raise VerifyError(f"quantization has {len(self.scale)} scales but {len(self.zero_point)} zero points")
        if not self.scale:
            raise VerifyError("quantization needs at least one scale")
        if self.axis is None and len(self.scale) != 1:
            raise VerifyError("per-tensor quantization takes exactly one scale (give an axis for per-channel)")
        for s in self.scale:
            if not (s > 0 and math.isfinite(s)):
                raise VerifyError(f"quantization scale must be positive and finite, got {s}")

    @staticmethod
    def per_tensor(scale: float, zero_point: int) -> QuantParams:
        """One scale and zero point for the whole tensor."""
        return QuantParams((float(scale),), (int(zero_point),))

    @staticmethod
    def per_channel(scales: Sequence[float], zero_points: Sequence[int], axis: int) -> QuantParams:
        """One scale and zero point per slice along ``axis``."""
        return QuantParams(tuple(float(s) for s in scales), tuple(int(z) for z in zero_points), axis)

    @property
    def is_per_tensor(self) -> bool:
        """True when a single scale applies to every element."""
        return self.axis is None

    def scales_for(self, shape: Sequence[int]) -> np.ndarray:
        """Scales as a float64 array broadcastable against a tensor of ``shape``."""
        return self._broadcast(np.asarray(self.scale, dtype=np.float64), shape)

    def zero_points_for(self, shape: Sequence[int]) -> np.ndarray:
        """Zero points as an int64 array broadcastable against a tensor of ``shape``."""
        return self._broadcast(np.asarray(self.zero_point, dtype=np.int64), shape)

    def _broadcast(self, arr: np.ndarray, shape: Sequence[int]) -> np.ndarray:
        if self.axis is None:
            return arr.reshape(())
        view = [1] * len(shape)
        view[self.axis] = arr.size
        return arr.reshape(view)


@dataclass(frozen=True, slots=True)
class TensorType:
    """Shape, element type, optional quantization and optional layout tag (e.g. ``"NHWC"``) of a tensor."""

    shape: tuple[int, ...]
    dtype: DType
    quant: QuantParams | None = None
    layout: str | None = None

    @property
    def rank(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def num_elements(self) -> int:
        """Product of the dimensions (1 for a scalar)."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Storage size in bytes."""
        return self.num_elements * self.dtype.itemsize

    @property
    def is_quantized(self) -> bool:
        """True for integer tensors that carry quantization parameters."""
        return self.quant is not None and not self.dtype.is_float

    def with_shape(self, shape: Sequence[int]) -> TensorType:
        """The same type with another shape (per-channel quantization is kept only if its axis still fits)."""
        quant = self.quant
        if quant is not None and quant.axis is not None and quant.axis >= len(shape):
            quant = None
        return TensorType(tuple(int(d) for d in shape), self.dtype, quant, self.layout)

    def with_quant(self, quant: QuantParams | None) -> TensorType:
        """The same type with other quantization parameters."""
        return TensorType(self.shape, self.dtype, quant, self.layout)


@dataclass(frozen=True, slots=True, eq=False)
class DenseAttr:
    """A constant tensor payload: a read-only NumPy array, compared by dtype, shape and bytes."""

    array: np.ndarray

    def __post_init__(self) -> None:
        arr = np.array(self.array, copy=True, order="C")  # owned, contiguous, shape kept (0-d included)
        arr.flags.writeable = False
        object.__setattr__(self, "array", arr)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DenseAttr):
            return NotImplemented
        a, b = self.array, other.array
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()

    def __hash__(self) -> int:
        return hash((self.array.dtype.str, self.array.shape, self.array.tobytes()))


AttrValue = int | float | bool | str | tuple[int, ...] | tuple[float, ...] | DenseAttr


class Use:
    """One use of a value: operand ``index`` of ``op``."""

    __slots__ = ("index", "op")

    def __init__(self, op: Op, index: int) -> None:
        self.op = op
        self.index = index

    def __repr__(self) -> str:
        return f"Use({self.op.kind}, {self.index})"


class Value:
    """An SSA value: a graph input or an op result. Compared by identity."""

    __slots__ = ("index", "name", "offset", "producer", "type", "uses")

    def __init__(self, type: TensorType, name: str | None = None, producer: Op | None = None,
                 index: int = 0) -> None:
        self.type = type
        self.name = name
        self.producer = producer
        self.index = index
        self.uses: list[Use] = []
        self.offset: int | None = None
        """Byte offset in the arena once the graph carries a memory plan (``plan-memory``), else None."""

    def __repr__(self) -> str:
        return f"Value(%{self.name}, {self.type.shape}, {self.type.dtype.value})"

    @property
    def users(self) -> list[Op]:
        """Ops that use this value, each listed once, in use order."""
        seen: dict[int, Op] = {}
        for u in self.uses:
            seen.setdefault(id(u.op), u.op)
        return list(seen.values())

    @property
    def const_value(self) -> np.ndarray | None:
        """The array of a value produced by a ``const`` op, else None."""
        p = self.producer
        if p is not None and p.kind == "const":
            attr = p.attrs.get("value")
            if isinstance(attr, DenseAttr):
                return attr.array
        return None


class Op:
    """One operation: a kind from the op registry, operands, attributes and results. Compared by identity."""

    __slots__ = ("attrs", "graph", "kind", "operands", "results", "scratch_offset")

    def __init__(self, kind: str, operands: Sequence[Value], result_types: Sequence[TensorType],
                 attrs: dict[str, AttrValue] | None = None, result_names: Sequence[str | None] | None = None
                 ) -> None:
        self.kind = kind
        self.attrs: dict[str, AttrValue] = dict(attrs or {})
        self.graph: Graph | None = None
        self.operands: list[Value] = []
        self.scratch_offset: int | None = None
        """Arena offset of the op's kernel scratch buffer once the graph carries a memory plan (if it needs one)."""
        names = list(result_names) if result_names is not None else [None] * len(result_types)
        self.results = [Value(t, n, self, i) for i, (t, n) in enumerate(zip(result_types, names, strict=True))]
        for v in operands:
            self._append_operand(v)

    def __repr__(self) -> str:
        res = ", ".join(f"%{r.name}" for r in self.results)
        return f"Op({res} = {self.kind})"

    @property
    def result(self) -> Value:
        """The single result of a one-result op."""
        if len(self.results) != 1:
            raise VerifyError(f"{self.kind} has {len(self.results)} results, not 1")
        return self.results[0]

    def _append_operand(self, v: Value) -> None:
        self.operands.append(v)
        v.uses.append(Use(self, len(self.operands) - 1))

    def _set_operand(self, index: int, new: Value) -> None:
        old = self.operands[index]
        old.uses = [u for u in old.uses if not (u.op is self and u.index == index)]
        self.operands[index] = new
        new.uses.append(Use(self, index))

    def set_operand(self, index: int, new: Value) -> None:
        """Replace operand ``index`` and keep both use-lists right."""
        self._set_operand(index, new)

    def drop_operands(self) -> None:
        """Remove this op from the use-lists of all its operands."""
        for v in self.operands:
            v.uses = [u for u in v.uses if u.op is not self]
        self.operands = []

    def attr(self, name: str, default: Any = None) -> Any:
        """An attribute's value, or ``default`` when absent."""
        return self.attrs.get(name, default)

    @property
    def label(self) -> str:
        """How messages name this op: ``%result = kind``."""
        if self.results:
            return f"%{self.results[0].name} = {self.kind}"
        return self.kind


class Graph:
    """A dataflow graph: named inputs, ops in a valid execution order, and outputs."""

    def __init__(self, name: str = "main", inputs: Sequence[Value] = (), outputs: Sequence[Value] = ()) -> None:
        self.name = name
        self.inputs: list[Value] = list(inputs)
        self.outputs: list[Value] = list(outputs)
        self.ops: list[Op] = []
        self.arena_bytes: int | None = None
        """Arena size of the memory plan the values' offsets belong to; None while the graph is unplanned."""

    # -- construction --------------------------------------------------------------------------------------
    def add_input(self, type: TensorType, name: str | None = None) -> Value:
        """Append a graph input of ``type``."""
        v = Value(type, name)
        self.inputs.append(v)
        return v

    def append(self, op: Op) -> Op:
        """Append ``op`` at the end of the op list."""
        return self.insert(len(self.ops), op)

    def insert(self, index: int, op: Op) -> Op:
        """Insert ``op`` at position ``index`` of the op list."""
        if op.graph is not None:
            raise VerifyError(f"{op.label} already belongs to graph @{op.graph.name}")
        op.graph = self
        self.ops.insert(index, op)
        return op

    def insert_before(self, anchor: Op, op: Op) -> Op:
        """Insert ``op`` just before ``anchor``."""
        return self.insert(self.index_of(anchor), op)

    def insert_after(self, anchor: Op, op: Op) -> Op:
        """Insert ``op`` just after ``anchor``."""
        return self.insert(self.index_of(anchor) + 1, op)

    def index_of(self, op: Op) -> int:
        """Position of ``op`` in the op list."""
        for i, o in enumerate(self.ops):
            if o is op:
                return i
        raise VerifyError(f"{op.label} is not in graph @{self.name}")

    def replace_all_uses(self, old: Value, new: Value) -> None:
        """Make every user of ``old`` (graph outputs included) use ``new`` instead."""
        if new is old:
            return
        for use in list(old.uses):
            use.op.set_operand(use.index, new)
        self.outputs = [new if o is old else o for o in self.outputs]

    def erase(self, op: Op) -> None:
        """Remove an op whose results are unused."""
        for r in op.results:
            if r.uses or any(o is r for o in self.outputs):
                raise VerifyError(f"cannot erase {op.label}: its result %{r.name} is still used")
        op.drop_operands()
        self.ops.pop(self.index_of(op))
        op.graph = None

    def create(self, kind: str, operands: Sequence[Value], result_types: Sequence[TensorType],
               attrs: dict[str, AttrValue] | None = None, names: Sequence[str | None] | None = None,
               before: Op | None = None) -> Op:
        """Build an op and append it (or insert it before ``before``)."""
        op = Op(kind, operands, result_types, attrs, names)
        if before is None:
            self.append(op)
        else:
            self.insert_before(before, op)
        return op

    # -- queries -------------------------------------------------------------------------------------------
    def values(self) -> Iterator[Value]:
        """Every value: inputs first, then results in op order."""
        yield from self.inputs
        for op in self.ops:
            yield from op.results

    def walk(self, kinds: Iterable[str] | None = None) -> list[Op]:
        """A snapshot of the ops (optionally only those of the given kinds), safe to mutate while iterating."""
        if kinds is None:
            return list(self.ops)
        wanted = set(kinds)
        return [op for op in self.ops if op.kind in wanted]

    def is_output(self, v: Value) -> bool:
        """True when ``v`` is a graph output."""
        return any(o is v for o in self.outputs)

    def clone(self) -> Graph:
        """A deep copy: new values and ops with the same names, types and (immutable) attributes."""
        g = Graph(self.name)
        g.arena_bytes = self.arena_bytes
        mapping: dict[int, Value] = {}
        for v in self.inputs:
            mapping[id(v)] = g.add_input(v.type, v.name)
            mapping[id(v)].offset = v.offset
        for op in self.ops:
            new = Op(op.kind, [mapping[id(v)] for v in op.operands], [r.type for r in op.results],
                     dict(op.attrs), [r.name for r in op.results])
            g.append(new)
            new.scratch_offset = op.scratch_offset
            for old_r, new_r in zip(op.results, new.results, strict=True):
                mapping[id(old_r)] = new_r
                new_r.offset = old_r.offset
        g.outputs = [mapping[id(v)] for v in self.outputs]
        return g

    def clear_memory_plan(self) -> None:
        """Drop the memory plan (arena size and every value's offset)."""
        self.arena_bytes = None
        for v in self.inputs:
            v.offset = None
        for op in self.ops:
            op.scratch_offset = None
            for r in op.results:
                r.offset = None

    def __repr__(self) -> str:
        return f"Graph(@{self.name}, {len(self.inputs)} inputs, {len(self.ops)} ops)"


def const(graph: Graph, array: np.ndarray, type: TensorType | None = None, name: str | None = None,
          before: Op | None = None) -> Value:
    """Create a ``const`` op holding ``array`` (its type derived from the array unless given) and return its value."""
    arr = np.asarray(array)
    if type is None:
        type = TensorType(tuple(arr.shape), DType.from_np(arr.dtype))
    arr = arr.astype(type.dtype.np, copy=False).reshape(type.shape)
    return graph.create("const", [], [type], {"value": DenseAttr(arr)}, [name], before=before).result
