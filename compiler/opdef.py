"""The op registry: each op kind is declared once, with everything the compiler needs to know about it.

An :class:`OpDef` gives an op kind's operands, attributes (with kinds and defaults), shape inference, extra
verification, MAC count and NumPy reference implementation. The verifier, the printer/parser, the interpreter and
the analyses all read the registry; none of them has a per-op ``if``.

User code can add op kinds with :func:`register_op`; the generic text syntax needs no grammar change for them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compiler.errors import UnsupportedOpError, VerifyError
from compiler.ir import AttrValue, DenseAttr, DType, Op
from compiler.overlap import OverlapFn


class AttrKind(enum.Enum):
    """The kind of value an attribute holds."""

    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    STR = "str"
    INTS = "ints"
    FLOATS = "floats"
    DENSE = "dense"


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True, slots=True)
class _BadAttr:
    """The error for a value of the wrong kind, built only when raised (the repr of a large constant is slow)."""

    spec: AttrSpec
    value: Any
    where: str

    def error(self) -> VerifyError:
        return VerifyError(f"{self.where}: attribute '{self.spec.name}' must be {self.spec.kind.value}, "
                           f"got {self.value!r}")


@dataclass(frozen=True, slots=True)
class AttrSpec:
    """One attribute of an op kind: name, kind, default (``REQUIRED`` when it must be given) and meaning."""

    name: str
    kind: AttrKind
    default: Any = REQUIRED
    doc: str = ""
    choices: tuple[str, ...] = ()

    def coerce(self, value: Any, where: str) -> AttrValue:
        """Check ``value`` against the kind and return it in canonical Python form (ints widened to floats etc.)."""
        k = self.kind
        bad = _BadAttr(self, value, where)
        if k is AttrKind.BOOL:
            if not isinstance(value, bool | np.bool_):
                raise bad.error()
            return bool(value)
        if k is AttrKind.INT:
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise bad.error()
            return int(value)
        if k is AttrKind.FLOAT:
            if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
                raise bad.error()
            return float(value)
        if k is AttrKind.STR:
            if not isinstance(value, str):
                raise bad.error()
            if self.choices and value not in self.choices:
                raise VerifyError(f"{where}: attribute '{self.name}' must be one of {', '.join(self.choices)}, "
                                  f"got {value!r}")
            return value
        if k is AttrKind.INTS:
            if not isinstance(value, tuple | list) or any(
                    isinstance(x, bool) or not isinstance(x, int | np.integer) for x in value):
                raise bad.error()
            return tuple(int(x) for x in value)
        if k is AttrKind.FLOATS:
            if not isinstance(value, tuple | list) or any(
                    isinstance(x, bool) or not isinstance(x, int | float | np.integer | np.floating) for x in value):
                raise bad.error()
            return tuple(float(x) for x in value)
        if not isinstance(value, DenseAttr):
            raise bad.error()
        return value


@dataclass(frozen=True, slots=True)
class Inferred:
    """What shape inference knows about a result: its shape and, when the rule fixes it, its element type."""

    shape: tuple[int, ...]
    dtype: DType | None = None


InferFn = Callable[[Op], Sequence[Inferred]]
VerifyFn = Callable[[Op], None]
MacsFn = Callable[[Op], int]
ReferenceFn = Callable[[Op, Sequence[np.ndarray]], Sequence[np.ndarray]]


def _no_macs(op: Op) -> int:
    return 0


@dataclass(frozen=True)
class OpDef:
    """Everything about one op kind.

    ``operands`` names the operands in order; a trailing ``?`` marks an optional one (only at the end) and a
    trailing ``*`` a variadic tail (one or more). ``reference`` maps input arrays to result arrays with the exact
    semantics the C kernels must reproduce (TFLite integer semantics for quantized tensors). ``pure`` ops may be
    folded when all operands are constant. ``overlap`` is the kernels' access contract (:mod:`compiler.overlap`):
    when given, the memory planner may place the result over an operand that dies at the op. ``scratch`` gives
    the bytes of scratch memory the op's kernel needs while it runs (the C kernels' own formula, tested against
    them); the planner places it in the arena for the duration of the op.
    """

    name: str
    summary: str
    operands: tuple[str, ...]
    infer: InferFn
    reference: ReferenceFn
    attrs: tuple[AttrSpec, ...] = ()
    num_results: int = 1
    verify: VerifyFn | None = None
    macs: MacsFn = _no_macs
    pure: bool = True
    overlap: OverlapFn | None = None
    scratch: MacsFn | None = None
    attr_specs: dict[str, AttrSpec] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "attr_specs", {a.name: a for a in self.attrs})

    def operand_count_range(self) -> tuple[int, int | None]:
        """Smallest and largest operand count (largest None for variadic ops)."""
        lo = sum(1 for o in self.operands if not o.endswith(("?", "*")))
        if any(o.endswith("*") for o in self.operands):
            return lo + 1, None
        return lo, len(self.operands)

    def get(self, op: Op, name: str) -> Any:
        """Attribute ``name`` of ``op``, or its declared default."""
        if name in op.attrs:
            return op.attrs[name]
        spec = self.attr_specs.get(name)
        if spec is None:
            raise KeyError(f"{self.name} has no attribute '{name}'")
        if spec.default is REQUIRED:
            raise VerifyError(f"{op.label}: missing required attribute '{name}'")
        return spec.default


_OPS: dict[str, OpDef] = {}


def register_op(opdef: OpDef) -> OpDef:
    """Add an op kind to the registry; a second registration of the same name is an error."""
    if opdef.name in _OPS:
        raise VerifyError(f"op kind '{opdef.name}' is registered twice")
    _OPS[opdef.name] = opdef
    return opdef


def _ensure_builtin_ops() -> None:
    import compiler.ops  # noqa: F401  (registers the built-in op kinds)


def get_opdef(kind: str) -> OpDef:
    """The :class:`OpDef` of ``kind``; an unknown kind raises :class:`UnsupportedOpError` listing the known ones."""
    _ensure_builtin_ops()
    try:
        return _OPS[kind]
    except KeyError:
        raise UnsupportedOpError(f"unknown op '{kind}'; known ops: {', '.join(sorted(_OPS))}") from None


def known_ops() -> list[str]:
    """Names of every registered op kind, sorted."""
    _ensure_builtin_ops()
    return sorted(_OPS)


def scratch_bytes(op: Op) -> int:
    """Scratch bytes the kernel of ``op`` needs while it runs (0 for most ops)."""
    fn = get_opdef(op.kind).scratch
    return 0 if fn is None else int(fn(op))


def attr(op: Op, name: str) -> Any:
    """Attribute ``name`` of ``op`` with the registry's default applied."""
    return get_opdef(op.kind).get(op, name)
