"""Lowering: an integer graph with a memory plan → a list of kernel calls with fully resolved parameters.

One small emitter per op kind (``backends/c/emitters/``) turns an op into kernel calls through a
:class:`LowerContext`, which hands out arena pointers (from the memory plan), flash arrays (weights, multipliers,
lookup tables) and parameter structs (printed with designated initialisers). The file writer
(:mod:`backends.c.emit`) prints the result and decides nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from compiler.errors import UnsupportedOpError
from compiler.ir import Graph, Op, Value
from compiler.memory import ALIAS_KINDS, MemoryPlan

CTYPES = {
    np.dtype("int8"): "int8_t",
    np.dtype("uint8"): "uint8_t",
    np.dtype("int16"): "int16_t",
    np.dtype("int32"): "int32_t",
    np.dtype("float32"): "float",
}


@dataclass
class ConstArray:
    """A const array in flash: C symbol, element type and contents."""

    symbol: str
    array: np.ndarray
    comment: str = ""
    alternative: tuple[str, np.ndarray] | None = None
    """A C preprocessor condition and the contents to compile instead when it holds (a second layout of the same
    weights, e.g. ``MCC_GEMM_NARROW``); ``array`` is the default and what flash figures count."""
    size_first: np.ndarray | None = None
    """The contents a size-first build compiles (``MCC_SIZE_FIRST``, GCC's -Os) before any other choice."""
    fixed: np.ndarray | None = None
    """The contents a build with the GEMM's instances of fixed shape compiles (``MCC_GEMM_FIXED_BUILD``, checked
    after ``alternative``)."""

    @property
    def ctype(self) -> str:
        """C element type."""
        return CTYPES[self.array.dtype]


@dataclass
class ParamStruct:
    """A ``static const`` parameter struct with designated initialisers."""

    symbol: str
    ctype: str
    fields: dict[str, int | str]
    speed_only: tuple[str, ...] = ()
    """Fields a size-first build's struct does not have (emitted under ``#if !defined(MCC_SIZE_FIRST)``)."""


@dataclass
class KernelCall:
    """One call in the generated ``invoke``: the kernel, its C argument expressions and a comment."""

    kernel: str
    args: list[str]
    comment: str
    op: Op | None = None
    layer: int = 0
    """1-based position of ``op`` among the graph's non-constant ops (the rows of report.json's ``layers``)."""


@dataclass
class Program:
    """Everything the file writer needs: calls, flash arrays, parameter structs, the runtime files used."""

    prefix: str
    calls: list[KernelCall] = field(default_factory=list)
    weights: list[ConstArray] = field(default_factory=list)
    tables: list[ConstArray] = field(default_factory=list)
    params: list[ParamStruct] = field(default_factory=list)
    runtime_files: set[str] = field(default_factory=set)
    gemm_shapes: set[tuple[int, int, int, int, int, int, int]] = field(default_factory=set)
    """``(groups, out_c, folded, k_h, k_w, in_c, bytes)`` of the GEMM layers that get an instance of fixed shape in
    ``mcc_gemm.c`` (``MCC_GEMM_SHAPES``, written by ``emit.py``; :func:`backends.c.emitters.gemm.fixed_shape`)."""
    narrow_gemm: bool = False
    """The GEMM weights are compiled in their byte layout only (``MCC_GEMM_NARROW`` fixed in the project's copy of
    ``mcc_gemm.c``): set by :meth:`use_narrow_gemm` when the 16-bit layout would not fit the target's flash."""

    def use_narrow_gemm(self) -> None:
        """Keep only the byte layout of every weight array that has one (half the flash of the 16-bit one). Arrays
        with another condition (the add tables, ``MCC_ADD_NO_TABLES``) stay as they are."""
        for a in (*self.weights, *self.tables):
            if a.alternative is not None and a.alternative[0] == "defined(MCC_GEMM_NARROW)":
                a.array, a.alternative = a.alternative[1], None  # a size-first array stays
            a.fixed = None  # the project's mcc_gemm.c compiles no instance of fixed shape
        self.narrow_gemm = True


Emitter = Callable[[Op, "LowerContext"], None]
EMITTERS: dict[str, Emitter] = {}


def emitter(*kinds: str) -> Callable[[Emitter], Emitter]:
    """Register the emitter of one or more op kinds."""

    def deco(fn: Emitter) -> Emitter:
        for k in kinds:
            if k in EMITTERS:
                raise ValueError(f"two C emitters for {k}")
            EMITTERS[k] = fn
        return fn

    return deco


def c_identifier(text: str, used: set[str]) -> str:
    """A legal, unique C identifier derived from ``text``."""
    base = re.sub(r"[^A-Za-z0-9_]", "_", text).strip("_") or "v"
    base = re.sub(r"_+", "_", base)
    if base[0].isdigit():
        base = "v" + base
    base = base[:48]
    name, i = base, 1
    while name in used:
        name = f"{base}_{i}"
        i += 1
    used.add(name)
    return name


class LowerContext:
    """What an emitter may ask for while lowering one op."""

    def __init__(self, graph: Graph, plan: MemoryPlan, prefix: str,
                 input_fields: dict[Value, str] | None = None) -> None:
        self.graph = graph
        self.plan = plan
        self.input_fields = input_fields or {}
        """The C member of ``<prefix>_inputs`` holding each graph input (streamed slices read it there)."""
        self.program = Program(prefix)
        self._symbols: set[str] = set()
        self._weights: dict[Value, str] = {}
        self._derived: dict[tuple[object, ...], str] = {}
        self._tables: dict[tuple[object, ...], str] = {}
        self.op: Op | None = None
        self.layer = 0
        self.layer_index = 0

    # -- buffers ---------------------------------------------------------------------------------------------------
    def act(self, v: Value) -> str:
        """C expression for activation ``v``'s data in the arena, typed by its element type."""
        ctype = CTYPES[v.type.dtype.np]
        return f"({ctype} *)(arena + {self.plan.offset(v)})"

    def cact(self, v: Value) -> str:
        """Like :meth:`act`, as a pointer to const (for inputs)."""
        ctype = CTYPES[v.type.dtype.np]
        return f"(const {ctype} *)(arena + {self.plan.offset(v)})"

    def scratch(self, ctype: str = "int16_t") -> str:
        """C expression for the current op's scratch buffer in the arena (``NULL`` when the plan gives it none)."""
        assert self.op is not None
        off = self.plan.scratch.get(self.op)
        return "NULL" if off is None else f"({ctype} *)(arena + {off})"

    def weight(self, v: Value, array: np.ndarray | None = None,
               alternative: tuple[str, np.ndarray] | None = None, size_first: np.ndarray | None = None,
               fixed: np.ndarray | None = None) -> str:
        """Symbol of the flash array holding constant ``v`` (or ``array``, a transformed copy of it; with
        ``alternative``, the condition under which the C compiles another array of the same type instead; with
        ``size_first``, the array a size-first build compiles, whatever the other condition; with ``fixed``, the
        array a build with the GEMM's instances of fixed shape compiles, :attr:`ConstArray.fixed`)."""
        if array is None:
            if v in self._weights:
                return self._weights[v]
            array = v.const_value
            if array is None:
                raise UnsupportedOpError(f"{self._label()}: operand %{v.name} must be a constant")
        arr = np.ascontiguousarray(array)
        alt = None if alternative is None else (alternative[0], np.ascontiguousarray(alternative[1]))
        # a transformed copy equal to one already emitted (the tiles of a patched layer) is stored once
        sf = None if size_first is None else np.ascontiguousarray(size_first)
        key = (arr.dtype.str, arr.shape, arr.tobytes(),
               None if alt is None else (alt[0], alt[1].dtype.str, alt[1].shape, alt[1].tobytes()),
               None if sf is None else (sf.dtype.str, sf.shape, sf.tobytes()),
               None if fixed is None else (fixed.dtype.str, fixed.shape, fixed.tobytes()))
        derived = array is not v.const_value
        if derived and key in self._derived:
            return self._derived[key]
        sym = c_identifier(f"{self.program.prefix}_{v.name}", self._symbols)
        self.program.weights.append(ConstArray(sym, arr, f"%{v.name}", alt, sf,
                                               None if fixed is None else np.ascontiguousarray(fixed)))
        if derived:
            self._derived[key] = sym
        else:
            self._weights[v] = sym
        return sym

    def table(self, name: str, array: np.ndarray, size_first: np.ndarray | None = None,
              alternative: tuple[str, np.ndarray] | None = None, fixed: np.ndarray | None = None) -> str:
        """Symbol of a const lookup/parameter array (multipliers, shifts, LUTs) for the current layer; an array
        equal to one already emitted (the same layer tile by tile, equal requantization) is shared. ``size_first``:
        the contents a size-first build (``MCC_SIZE_FIRST``) compiles instead; ``alternative``: a condition and the
        contents to compile when it holds (checked after the size-first one); ``fixed``: the contents a build with
        the GEMM's instances of fixed shape compiles (:attr:`ConstArray.fixed`)."""
        arr = np.ascontiguousarray(array)
        sf = None if size_first is None else np.ascontiguousarray(size_first)
        alt = None if alternative is None else (alternative[0], np.ascontiguousarray(alternative[1]))
        key = (arr.dtype.str, arr.shape, arr.tobytes(), None if sf is None else (sf.dtype.str, sf.shape, sf.tobytes()),
               None if alt is None else (alt[0], alt[1].dtype.str, alt[1].shape, alt[1].tobytes()),
               None if fixed is None else (fixed.dtype.str, fixed.shape, fixed.tobytes()))
        if key in self._tables:
            return self._tables[key]
        sym = c_identifier(f"L{self.layer}_{name}", self._symbols)
        self.program.tables.append(ConstArray(sym, arr, alternative=alt, size_first=sf,
                                              fixed=None if fixed is None else np.ascontiguousarray(fixed)))
        self._tables[key] = sym
        return sym

    def params(self, ctype: str, speed_only: tuple[str, ...] = (), /, **fields: int | str) -> str:
        """Address of a ``static const`` parameter struct for the current layer (``speed_only``: the fields a
        size-first build's struct leaves out)."""
        sym = c_identifier(f"L{self.layer}_params", self._symbols)
        self.program.params.append(ParamStruct(sym, ctype, {k: (int(v) if not isinstance(v, str) else v)
                                                             for k, v in fields.items()}, speed_only))
        return "&" + sym

    def call(self, kernel: str, args: Sequence[str], runtime_file: str) -> None:
        """Append a kernel call for the current op; ``runtime_file`` is the ``runtime_c`` source it needs."""
        op = self.op
        assert op is not None
        outs = ", ".join(f"%{r.name} @{self.plan.offset(r)}+{r.type.nbytes}" for r in op.results)
        comment = f"{op.kind} -> {outs}"
        self.program.calls.append(KernelCall(kernel, list(args), comment, op, self.layer_index))
        self.program.runtime_files.add(runtime_file)

    def _label(self) -> str:
        return self.op.label if self.op is not None else "?"


def lower(graph: Graph, plan: MemoryPlan, prefix: str, input_fields: dict[Value, str] | None = None) -> Program:
    """Lower every op of ``graph`` with its registered emitter; unknown kinds raise :class:`UnsupportedOpError`."""
    import backends.c.emitters  # noqa: F401  (registers the emitters)

    ctx = LowerContext(graph, plan, prefix, input_fields)
    for op in graph.ops:
        if op.kind == "const":
            continue
        ctx.layer_index += 1
        src = op.operands[0] if op.operands else None
        if op.kind in ALIAS_KINDS and src is not None and src in plan.offsets and \
                all(plan.offsets.get(r) == plan.offsets[src] for r in op.results):
            continue
        fn = EMITTERS.get(op.kind)
        if fn is None:
            dtypes = ", ".join(sorted({v.type.dtype.value for v in (*op.operands, *op.results)}))
            raise UnsupportedOpError(f"{op.label}: no C kernel for this op on {dtypes} tensors; "
                                     f"C kernels exist for: {', '.join(sorted(EMITTERS))}")
        ctx.op = op
        ctx.layer += 1
        fn(op, ctx)
    ctx.program.runtime_files.update(("mcc_kernels.h", "mcc_compute.h", "mcc_data.h"))
    return ctx.program
