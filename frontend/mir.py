"""The parser of the textual IR (``.mir``): Lark grammar in ``mir.lark``, graph building, sidecar files.

``parse(text)`` turns one graph's text into a :class:`~compiler.ir.Graph` and (by default) verifies it; every
problem is a :class:`~compiler.errors.ParseError` located at ``file:line:col`` with the offending line and a
caret. ``compiler.printer.print_graph`` writes the canonical text back. The syntax is described in ``docs/ir.md``.
"""

from __future__ import annotations

import functools
import json
import math
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import lark
import numpy as np
from lark import Token, Tree

from compiler.errors import MccError, ParseError
from compiler.ir import AttrValue, DenseAttr, DType, Graph, Op, QuantParams, TensorType, Value
from compiler.opdef import get_opdef, scratch_bytes
from compiler.printer import print_graph
from compiler.verifier import verify

_GRAMMAR = Path(__file__).with_name("mir.lark")
_INT = re.compile(r"-?[0-9]+")
_DTYPES = {d.value: d for d in DType}


@functools.cache
def _parser() -> lark.Lark:
    return lark.Lark(_GRAMMAR.read_text(), parser="lalr", lexer="contextual", propagate_positions=True,
                     maybe_placeholders=False)


def parse(text: str, filename: str = "<input>", *, resources: Mapping[str, np.ndarray] | None = None,
          verify: bool = True) -> Graph:
    """Parse one graph from ``.mir`` text.

    ``resources`` supplies the arrays that ``dense_resource<"key">`` payloads name (a sidecar ``.npz``). With
    ``verify`` the graph is checked by :func:`compiler.verifier.verify`; its errors are reported at the op.
    """
    return _Builder(text, filename, resources or {}).build(verify)


def parse_file(path: str | Path, *, verify: bool = True) -> Graph:
    """Parse a ``.mir`` file, with the arrays of its sidecar ``<stem>.npz`` when that file exists."""
    path = Path(path)
    sidecar = path.with_suffix(".npz")
    resources: dict[str, np.ndarray] = {}
    if sidecar.is_file():
        with np.load(sidecar, allow_pickle=False) as npz:
            resources = {k: npz[k] for k in npz.files}
    return parse(path.read_text(encoding="utf-8"), str(path), resources=resources, verify=verify)


def write_file(graph: Graph, path: str | Path, *, npz_threshold_bytes: int = 4096) -> None:
    """Write ``graph`` to a ``.mir`` file; constants above ``npz_threshold_bytes`` go to a sidecar ``<stem>.npz``.

    A stale sidecar from an earlier write is removed when no constant needs one.
    """
    path = Path(path)
    resources: dict[str, np.ndarray] = {}
    text = print_graph(graph, resources=resources, resource_min_bytes=npz_threshold_bytes)
    sidecar = path.with_suffix(".npz")
    if resources:
        _write_npz(sidecar, resources)
    elif sidecar.exists():
        sidecar.unlink()
    path.write_text(text, encoding="utf-8")


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    # np.savez takes the keys as keyword arguments, which breaks for keys such as 'file'; write the zip directly.
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for key, arr in arrays.items():
            with zf.open(key + ".npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(arr), allow_pickle=False)


# -- syntax errors in plain words --------------------------------------------------------------------------------
_TERMINAL_WORDS = {
    "SSA_NAME": "a %name",
    "GRAPH_NAME": "a @name",
    "NAME": "a name",
    "STRING": "a string",
    "NUMBER": "a number",
    "TENSOR_BODY": "a shape and element type (like 1x8xi8)",
    "$END": "end of input",
}


def _describe_terminal(name: str) -> str:
    if name in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[name]
    for t in _parser().terminals:
        if t.name == name and t.pattern.type == "str":
            return f"'{t.pattern.value}'"
    return name.lower()


def _expected_words(names: Sequence[str] | set[str] | None) -> str:
    words = sorted({_describe_terminal(n) for n in names or () if n not in {"WS", "COMMENT"}})
    if not words:
        return ""
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _acceptable(e: lark.exceptions.UnexpectedInput) -> set[str]:
    """The terminals the parser can really take here (LALR's own lookahead sets are too wide after a reduce)."""
    ip = getattr(e, "interactive_parser", None)
    if ip is None:
        return set()
    try:
        return set(ip.accepts())
    except lark.exceptions.LarkError:  # pragma: no cover - defensive: fall back to Lark's own set
        return set()


def _token(node: Tree | Token) -> Token:
    """A parse-tree child that the grammar makes a terminal."""
    assert isinstance(node, Token)
    return node


def _tree(node: Tree | Token) -> Tree:
    """A parse-tree child that the grammar makes a rule (every value and type is one)."""
    assert isinstance(node, Tree)
    return node


def _pos(tok: Token) -> tuple[int, int]:
    """Where a token starts; tokens from the lexer always carry their line and column."""
    assert tok.line is not None and tok.column is not None
    return tok.line, tok.column


def _describe_token(tok: Token) -> str:
    if tok.type == "$END":
        return "end of input"
    s = str(tok)
    if len(s) > 24:
        s = s[:21] + "..."
    return f"'{s}'"


# -- building ----------------------------------------------------------------------------------------------------
@dataclass
class _PendingDense:
    """A dense payload whose element type may come from the op's result type (const ops)."""

    kind: str  # "list", "hex" or "resource"
    payload: Any
    type: TensorType | None
    where: Token | Tree


class _Builder:
    def __init__(self, text: str, filename: str, resources: Mapping[str, np.ndarray]) -> None:
        self.text = text
        self.filename = filename
        self.resources = resources
        self.lines = text.split("\n")
        self.values: dict[str, tuple[Value, int, int]] = {}
        self.locations: dict[int, tuple[int, int]] = {}  # id(op) -> (line, column)
        self.graph_loc = (1, 1)
        self.return_loc = (1, 1)

    # -- errors
    def error_at(self, message: str, line: int, column: int) -> ParseError:
        source = self.lines[line - 1].rstrip("\r") if 1 <= line <= len(self.lines) else ""
        return ParseError(message, filename=self.filename, line=line, column=column, source_line=source)

    def error(self, message: str, where: Token | Tree) -> ParseError:
        if isinstance(where, Tree):
            meta = where.meta
            return self.error_at(message, getattr(meta, "line", 1), getattr(meta, "column", 1))
        return self.error_at(message, where.line or 1, where.column or 1)

    def end_of_input(self) -> tuple[int, int]:
        last = len(self.lines)
        while last > 1 and not self.lines[last - 1].strip():
            last -= 1
        return last, len(self.lines[last - 1].rstrip("\r")) + 1

    def syntax_error(self, e: lark.exceptions.UnexpectedInput) -> ParseError:
        if isinstance(e, lark.exceptions.UnexpectedToken):
            tok = e.token
            if tok.type == "$END":
                line, col = self.end_of_input()
            else:
                line, col = tok.line, tok.column
            msg = f"unexpected {_describe_token(tok)}"
            accepted = _acceptable(e) or e.expected
            expected = _expected_words(accepted)
            if tok.type == "GRAPH" and "$END" in accepted:
                expected += " (a .mir text holds one graph)"
        elif isinstance(e, lark.exceptions.UnexpectedCharacters):
            line, col = e.line, e.column
            pos = cast(int, e.pos_in_stream)  # set by UnexpectedCharacters; Lark declares the base class's None
            char = self.text[pos] if pos < len(self.text) else ""
            msg = f"unexpected character {char!r}"
            expected = _expected_words(_acceptable(e) or e.allowed)
        else:  # UnexpectedEOF
            line, col = self.end_of_input()
            msg = "unexpected end of input"
            expected = _expected_words(getattr(e, "expected", None))
        if expected:
            msg += f"; expected {expected}"
        return self.error_at(msg, line, col)

    # -- the graph
    def build(self, run_verifier: bool) -> Graph:
        try:
            tree = _parser().parse(self.text)
        except lark.exceptions.UnexpectedInput as e:
            raise self.syntax_error(e) from None
        gtree = tree.children[0]
        assert isinstance(gtree, Tree)
        graph_kw, name_tok, *rest = gtree.children
        self.graph_loc = _pos(_token(graph_kw))
        graph = Graph(self.unquote(_token(name_tok), 1))
        for child in rest:
            if child is None:  # no parameters
                continue
            assert isinstance(child, Tree)
            if child.data == "param":
                name_t, ttree, place_t = child.children
                name = _token(name_t)
                v = graph.add_input(self.type(_tree(ttree)), self.define_name(name))
                self.place([v], _tree(place_t))
                self.record(v, name)
            elif child.data == "arena":
                if child.children and child.children[0] is not None:
                    graph.arena_bytes = self.offset(_token(child.children[1]))
            elif child.data == "op":
                self.op(graph, child)
            else:  # ret
                kw, *outs = child.children
                self.return_loc = _pos(_token(kw))
                graph.outputs = [self.use(_token(t)) for t in outs]
        if run_verifier:
            self.verify(graph)
        return graph

    def unquote(self, tok: Token, skip: int) -> str:
        s = str(tok)[skip:]
        if not s.startswith('"'):
            return s
        try:
            out = json.loads(s)
        except json.JSONDecodeError as e:
            raise self.error(f"invalid string escape ({e.msg})", tok) from None
        return out

    def define_name(self, tok: Token) -> str:
        name = self.unquote(tok, 1)
        if name in self.values:
            _, line, col = self.values[name]
            raise self.error(f"%{name} is already defined (at line {line}, column {col})", tok)
        return name

    def record(self, v: Value, tok: Token) -> None:
        assert v.name is not None
        line, col = _pos(tok)
        self.values[v.name] = (v, line, col)

    def use(self, tok: Token) -> Value:
        name = self.unquote(tok, 1)
        got = self.values.get(name)
        if got is None:
            raise self.error(f"use of undefined value {tok}", tok)
        return got[0]

    def offset(self, tok: Token) -> int:
        if not _INT.fullmatch(str(tok)) or int(tok) < 0:
            raise self.error(f"an arena offset or size must be an integer >= 0, got {tok}", tok)
        return int(tok)

    def place(self, values: Sequence[Value], tree: Tree) -> None:
        """Arena offsets after ``at`` (one per value), if given."""
        toks = [_token(c) for c in tree.children if c is not None][1:]
        if not toks:
            return
        if len(toks) != len(values):
            raise self.error(f"{_count(len(values), 'value')} but {_count(len(toks), 'arena offset')}", toks[0])
        for v, tok in zip(values, toks, strict=True):
            v.offset = self.offset(tok)

    def op(self, graph: Graph, tree: Tree) -> None:
        res_t, kind_t, operands_t, attrs_t, types_t, place_t, scratch_t = tree.children
        assert isinstance(res_t, Tree) and isinstance(operands_t, Tree)
        assert isinstance(attrs_t, Tree) and isinstance(types_t, Tree)
        kind_tok = _token(kind_t)
        res_toks = [_token(c) for c in res_t.children]
        names: list[str] = []
        for tok in res_toks:
            name = self.define_name(tok)
            if name in names:
                raise self.error(f"%{name} is defined twice by this op", tok)
            names.append(name)
        kind = str(kind_tok)
        try:
            get_opdef(kind)
        except MccError as e:
            raise self.error(str(e), kind_tok) from None
        operands = [self.use(_token(t)) for t in operands_t.children]
        attrs: dict[str, Any] = {}
        for a in attrs_t.children:
            key_t, vtree = _tree(a).children
            key_tok = _token(key_t)
            key = self.unquote(key_tok, 0)
            if key in attrs:
                raise self.error(f"attribute '{key}' is given twice", key_tok)
            attrs[key] = self.value(vtree)
        types = [self.type(_tree(t)) for t in types_t.children]
        if len(types) != len(names):
            where = types_t if types_t.children else kind_tok
            raise self.error(f"{kind} has {_count(len(names), 'result')} but {_count(len(types), 'result type')}",
                             where)
        implied = types[0] if kind == "const" and types else None
        attrs = {k: self.resolve(v, implied) for k, v in attrs.items()}
        op = graph.append(Op(kind, operands, types, attrs, names))
        start = res_toks[0] if res_toks else kind_tok
        self.locations[id(op)] = _pos(start)
        for r, tok in zip(op.results, res_toks, strict=True):
            self.record(r, tok)
        self.place(op.results, _tree(place_t))
        toks = [_token(c) for c in _tree(scratch_t).children if c is not None]
        if toks:
            size_tok, at_tok = toks[1], toks[3]
            need = scratch_bytes(op)
            if self.offset(size_tok) != need:
                raise self.error(f"{kind} needs {need} B of kernel scratch here, not {size_tok}", size_tok)
            op.scratch_offset = self.offset(at_tok)

    def verify(self, graph: Graph) -> None:
        try:
            verify(graph)
        except MccError as e:
            msg = str(e)
            line, col = self.return_loc if "output" in msg else self.graph_loc
            for op in graph.ops:
                if msg.startswith(op.label + ":"):
                    line, col = self.locations.get(id(op), (line, col))
                    break
            raise self.error_at(msg, line, col) from None

    # -- types
    def type(self, tree: Tree) -> TensorType:
        _, body_t, *params = tree.children
        body = _token(body_t)
        *dims, dname = str(body).split("x")
        line, col = _pos(body)
        for d in dims:
            if not d.isdigit() or not d.isascii():
                raise self.error_at(f"'{d}' is not a dimension; a tensor type looks like tensor<1x8xi8>",
                                    line, col)
            col += len(d) + 1
        dtype = _DTYPES.get(dname)
        if dtype is None:
            what = "missing element type" if dname.isdigit() else f"unknown element type '{dname}'"
            raise self.error_at(f"{what} (expected one of {', '.join(_DTYPES)})", line, col)
        shape = tuple(int(d) for d in dims)
        given: dict[str, tuple[Any, Token, Tree]] = {}
        allowed = ["scale", "layout"]
        for p in params:
            key_t, vtree_t = _tree(p).children
            key_tok, vtree = _token(key_t), _tree(vtree_t)
            key = str(key_tok)
            if key not in allowed:
                want = " or ".join(f"'{k}'" for k in allowed) if allowed else "'>'"
                raise self.error(f"unexpected type parameter '{key}'; expected {want}", key_tok)
            given[key] = (self.value(vtree), key_tok, vtree)
            allowed = {"scale": ["zp"], "zp": ["axis", "layout"], "axis": ["layout"], "layout": []}[key]
        if "scale" in given and "zp" not in given:
            raise self.error("'scale' must be followed by 'zp'", given["scale"][1])
        quant = self.quant(given, shape) if "scale" in given else None
        layout = None
        if "layout" in given:
            layout, _, vtree = given["layout"]
            if not isinstance(layout, str):
                raise self.error("layout must be a string", vtree)
        return TensorType(shape, dtype, quant, layout)

    def quant(self, given: dict[str, tuple[Any, Token, Tree]], shape: tuple[int, ...]) -> QuantParams:
        scale, stok, svtree = given["scale"]
        zp, _, zvtree = given["zp"]
        per_channel = "axis" in given
        if per_channel:
            if not isinstance(scale, tuple) or not all(isinstance(s, int | float) for s in scale):
                raise self.error("per-channel 'scale' must be a list of numbers", svtree)
            if not isinstance(zp, tuple) or not all(_is_int(z) for z in zp):
                raise self.error("per-channel 'zp' must be a list of integers", zvtree)
            axis, _, avtree = given["axis"]
            if not _is_int(axis) or not 0 <= axis < len(shape):
                raise self.error(f"'axis' must be an integer in [0, {len(shape)})", avtree)
            scales, zps = tuple(float(s) for s in scale), tuple(zp)
        else:
            if isinstance(scale, tuple):
                raise self.error("a list of scales needs an 'axis' after 'zp' (per-channel quantization)", svtree)
            if isinstance(scale, bool) or not isinstance(scale, int | float):
                raise self.error("'scale' must be a number", svtree)
            if not _is_int(zp):
                raise self.error("'zp' must be an integer", zvtree)
            scales, zps, axis = (float(scale),), (zp,), None
        try:
            return QuantParams(scales, zps, axis)
        except MccError as e:
            raise self.error(str(e), stok) from None

    # -- attribute values
    def value(self, tree: Tree | Token) -> Any:
        if not isinstance(tree, Tree):
            raise self.error("expected a value", tree)  # pragma: no cover - the grammar makes every value a rule
        data = tree.data
        if data == "number":
            s = str(tree.children[0])
            return int(s) if _INT.fullmatch(s) else float(s)
        if data == "word":
            w = str(tree.children[0])
            words = {"true": True, "false": False, "inf": math.inf, "nan": math.nan}
            if w not in words:
                raise self.error(f"unexpected word '{w}' in a value; expected a number, true, false, inf, nan, "
                                 "a string, a list or a dense tensor", tree)
            return words[w]
        if data == "string":
            return self.unquote(_token(tree.children[0]), 0)
        if data == "list":
            items = [self.value(c) for c in tree.children]
            for c, item in zip(tree.children, items, strict=True):
                if isinstance(item, bool) or not isinstance(item, int | float):
                    raise self.error("list elements must be numbers", c)
            if any(isinstance(x, float) for x in items):
                return tuple(float(x) for x in items)
            return tuple(items)
        if data == "dense":
            _, payload, *ty = tree.children
            explicit = self.type(_tree(ty[0])) if ty else None
            if isinstance(payload, Tree) and payload.data == "list":
                return _PendingDense("list", [self.element(c) for c in payload.children], explicit, tree)
            if isinstance(payload, Tree) and payload.data == "string":
                s = self.unquote(_token(payload.children[0]), 0)
                if not s.startswith(("0x", "0X")):
                    raise self.error('a dense string payload must be hex bytes, like "0x01ff"', payload)
                try:
                    raw = bytes.fromhex(s[2:])
                except ValueError:
                    raise self.error("invalid hex in dense payload", payload) from None
                return _PendingDense("hex", raw, explicit, tree)
            raise self.error('dense<...> takes a list of numbers or a hex string "0x..."', payload)
        if data == "dense_resource":
            _, key_t, *ty = tree.children
            key_tok = _token(key_t)
            explicit = self.type(_tree(ty[0])) if ty else None
            key = self.unquote(key_tok, 0)
            if key not in self.resources:
                where = "no resources were given" if not self.resources else "the sidecar .npz has no such array"
                raise self.error(f"unknown resource '{key}' ({where})", key_tok)
            return _PendingDense("resource", (key, self.resources[key]), explicit, key_tok)
        raise self.error("expected a value", tree)  # pragma: no cover - the grammar allows nothing else

    def element(self, tree: Tree | Token) -> tuple[int | float, Tree | Token]:
        v = self.value(tree)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self.error("dense list elements must be numbers", tree)
        return v, tree

    def resolve(self, v: Any, implied: TensorType | None) -> AttrValue:
        if not isinstance(v, _PendingDense):
            return v
        t = v.type or implied
        if t is None:
            raise self.error("a dense payload needs its type here, like dense<[1, 2]> : tensor<2xi8>", v.where)
        n = t.num_elements
        np_dtype = t.dtype.np
        desc = f"tensor<{'x'.join([*map(str, t.shape), t.dtype.value])}>"
        if v.kind == "list":
            items = v.payload
            if len(items) != n:
                raise self.error(f"dense payload has {len(items)} elements but {desc} needs {n}", v.where)
            if t.dtype.is_float:
                arr = np.array([float(x) for x, _ in items], dtype=np.float32)
            else:
                lo, hi = t.dtype.qmin, t.dtype.qmax
                for x, where in items:
                    if not isinstance(x, int) or not lo <= x <= hi:
                        raise self.error(f"{x} is not a valid {t.dtype.value} element", where)
                arr = np.array([x for x, _ in items], dtype=np_dtype)
        elif v.kind == "hex":
            raw = v.payload
            if len(raw) != n * np_dtype.itemsize:
                raise self.error(f"dense payload has {len(raw)} bytes but {desc} needs {n * np_dtype.itemsize}",
                                 v.where)
            arr = np.frombuffer(raw, dtype=np_dtype.newbyteorder("<")).astype(np_dtype)
        else:
            key, arr = v.payload
            arr = np.asarray(arr)
            if arr.dtype != np_dtype or arr.size != n:
                raise self.error(f"resource '{key}' holds {arr.size} elements of {arr.dtype}, but {desc} needs "
                                 f"{n} of {np_dtype}", v.where)
        return DenseAttr(arr.reshape(t.shape))


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")
