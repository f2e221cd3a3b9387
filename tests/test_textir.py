"""The textual IR: printer and Lark parser round-trip exactly; errors point at the right line and column."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler import opdef
from compiler.errors import ParseError
from compiler.ir import DenseAttr, DType, Graph, Op, QuantParams, TensorType, const
from compiler.opdef import Inferred, OpDef, register_op
from compiler.printer import format_attr, format_type, print_graph
from frontend import mir
from frontend.mir import parse, parse_file, write_file

TESTS = Path(__file__).parent
OWN_EXAMPLES = TESTS / "textir"


# -- round trip of every .mir file under tests/ ------------------------------------------------------------------
def _is_marker(line: str) -> bool:
    s = line.strip()
    return s.startswith("// -----") or s.startswith("// EXPECT")


def split_chunks(text: str) -> list[tuple[str, str]]:
    """Graph chunks of a file (split on ``// -----`` and ``// EXPECT...`` lines), each with its canonical form."""
    chunks: list[list[str]] = [[]]
    for line in text.splitlines():
        if _is_marker(line):
            chunks.append([])
        else:
            chunks[-1].append(line)
    out = []
    for lines in chunks:
        code = [ln for ln in lines if ln.strip() and not ln.strip().startswith("//")]
        if code:
            out.append(("\n".join(lines) + "\n", "\n".join(code) + "\n"))
    return out


def _mir_cases() -> list:
    cases = []
    for path in sorted(TESTS.rglob("*.mir")):
        for i, (chunk, canonical) in enumerate(split_chunks(path.read_text(encoding="utf-8"))):
            rel = path.relative_to(TESTS)
            cases.append(pytest.param(path, chunk, canonical, id=f"{rel}#{i}"))
    return cases


def _sidecar(path: Path) -> dict[str, np.ndarray]:
    npz = path.with_suffix(".npz")
    if not npz.is_file():
        return {}
    with np.load(npz) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize(("path", "chunk", "canonical"), _mir_cases())
def test_mir_files_round_trip(path: Path, chunk: str, canonical: str) -> None:
    own = path.parent == OWN_EXAMPLES  # other people's goldens may hold deliberately invalid graphs
    res = _sidecar(path)
    printed = print_graph(parse(chunk, str(path), resources=res, verify=own), resources={} if res else None)
    assert printed == canonical
    again = print_graph(parse(printed, resources=res, verify=own), resources={} if res else None)
    assert again == printed


def test_own_examples_exist_and_verify() -> None:
    files = sorted(OWN_EXAMPLES.glob("*.mir"))
    assert len(files) >= 4
    for f in files:
        g = parse_file(f)
        assert g.ops and g.outputs


def test_canonical_example_from_the_docs() -> None:
    text = (
        'graph @net(%x: tensor<1x8x8x3xi8, scale=0.5, zp=-128>) {\n'
        '  %w = const() {value = dense<"0x' + "01" * 108 + '">} : '
        'tensor<4x3x3x3xi8, scale=[0.25, 0.5, 0.125, 1.0], zp=[0, 0, 0, 0], axis=0>\n'
        '  %b = const() {value = dense<[1, -2, 3, 4]>} : tensor<4xi32>\n'
        '  %y = nn.conv2d(%x, %w, %b) {act_min = 0.0, pads = [1, 1, 1, 1], strides = [2, 2]} : '
        'tensor<1x4x4x4xi8, scale=0.5, zp=-3>\n'
        '  return %y\n'
        '}\n')
    g = parse(text)
    assert print_graph(g) == text
    conv = g.ops[2]
    assert conv.kind == "nn.conv2d" and conv.attrs["strides"] == (2, 2) and conv.attrs["act_min"] == 0.0
    w = g.ops[0].results[0]
    assert w.type.quant == QuantParams((0.25, 0.5, 0.125, 1.0), (0, 0, 0, 0), 0)
    assert w.const_value is not None and w.const_value.shape == (4, 3, 3, 3) and (w.const_value == 1).all()
    assert g.ops[1].results[0].const_value.tolist() == [1, -2, 3, 4]
    assert [v.name for v in g.outputs] == ["y"]


def test_free_form_input_is_accepted() -> None:
    text = """
    // leading comment

    graph @g (  %x : tensor< 3x4xf32 > )   {   // trailing comment
       %w = const ( ) { value = dense< [ 1 , 2 , 3 , 4 , 5 , 6 , 7 , 8 , 9 , 10 , 11 , 12 ] > } :tensor<3x4xf32>

       %b = const() {value = dense<"0X0000803F0000803F0000803F">} : tensor<3xf32>
       %"y" = nn.fully_connected(%x,%w,%"b") {
           act_min = 0
       } : tensor<3x3xf32>
       return %y }"""
    g = parse(text)
    assert [op.kind for op in g.ops] == ["const", "const", "nn.fully_connected"]
    assert g.ops[1].result.const_value.tolist() == [1.0, 1.0, 1.0]
    assert print_graph(g).splitlines()[3] == "  %y = nn.fully_connected(%x, %w, %b) {act_min = 0.0} : tensor<3x3xf32>"


def test_verifier_coerces_int_to_float_attribute() -> None:
    text = ("graph @g(%x: tensor<2x3xf32>) {\n"
            "  %w = const() {value = dense<[1, 2, 3, 4, 5, 6]>} : tensor<2x3xf32>\n"
            "  %y = nn.fully_connected(%x, %w) {act_min = 0} : tensor<2x2xf32>\n"
            "  return %y\n}\n")
    g = parse(text)
    assert g.ops[1].attrs["act_min"] == 0.0 and isinstance(g.ops[1].attrs["act_min"], float)
    assert "{act_min = 0.0}" in print_graph(g)
    assert g.ops[0].results[0].const_value.dtype == np.float32


# -- printer details ---------------------------------------------------------------------------------------------
def test_format_type() -> None:
    assert format_type(TensorType((), DType.FLOAT32)) == "tensor<f32>"
    assert format_type(TensorType((0, 3), DType.UINT8)) == "tensor<0x3xu8>"
    q = QuantParams((0.5,), (-1,))
    assert format_type(TensorType((1, 2), DType.INT8, q, "NHWC")) == 'tensor<1x2xi8, scale=0.5, zp=-1, layout="NHWC">'
    pc = QuantParams((0.5, 0.25), (0, 1), 1)
    assert format_type(TensorType((3, 2), DType.INT16, pc)) == "tensor<3x2xi16, scale=[0.5, 0.25], zp=[0, 1], axis=1>"


@pytest.mark.parametrize(("value", "text"), [
    (-3, "-3"), (0.5, "0.5"), (2.0, "2.0"), (1e-05, "1e-05"), (math.inf, "inf"), (-math.inf, "-inf"),
    (math.nan, "nan"), (-0.0, "-0.0"), (True, "true"), (False, "false"), ('a"b\n', '"a\\"b\\n"'),
    ((1, 2), "[1, 2]"), ((0.5, 1.0), "[0.5, 1.0]"), ((), "[]"), ((1, 2.5), "[1.0, 2.5]"),
    (DenseAttr(np.array([1, -2], np.int8)), "dense<[1, -2]> : tensor<2xi8>"),
    (DenseAttr(np.array([[1.5]], np.float32)), "dense<[1.5]> : tensor<1x1xf32>"),
    (DenseAttr(np.arange(17, dtype=np.int16)), 'dense<"0x' + "".join(f"{i:02x}00" for i in range(17))
     + '"> : tensor<17xi16>'),
])
def test_format_attr(value, text: str) -> None:
    assert format_attr(value) == text


def test_scalar_const_round_trips() -> None:
    text = "graph @g() {\n  %c = const() {value = dense<[1.5]>} : tensor<f32>\n  return %c\n}\n"
    assert print_graph(parse(text)) == text


def test_names_are_uniquified_and_quoted_deterministically() -> None:
    g = Graph("my graph")
    t = TensorType((2,), DType.FLOAT32)
    a = g.add_input(t, None)
    b = g.add_input(t, "x")
    c = g.create("nn.fully_connected", [a, const(g, np.ones((2, 2), np.float32), name="x")], [t], names=["0"]).result
    d = g.create("nn.fully_connected", [b, const(g, np.ones((2, 2), np.float32), name=None)], [t],
                 names=["x_1"]).result
    e = g.create("nn.fully_connected", [c, const(g, np.ones((2, 2), np.float32), name="w b")], [t],
                 names=["x"]).result
    g.outputs = [d, e]
    text = print_graph(g)
    assert text.splitlines()[0] == 'graph @"my graph"(%1: tensor<2xf32>, %x: tensor<2xf32>) {'
    defined = [line.split(" = ")[0].strip() for line in text.splitlines()[1:-2]]
    assert defined == ["%x_2", "%0", "%2", "%x_1", '%"w b"', "%x_3"]
    assert text.splitlines()[-2] == "  return %x_1, %x_3"
    assert print_graph(parse(text)) == text


def test_unnamed_values_print_as_numbers() -> None:
    g = Graph()
    x = g.add_input(TensorType((1,), DType.INT32))
    c = const(g, np.array([5], np.int32))
    g.outputs = [x, c]
    assert print_graph(g) == ("graph @main(%0: tensor<1xi32>) {\n  %1 = const() {value = dense<[5]>} : tensor<1xi32>\n"
                              "  return %0, %1\n}\n")


def test_const_payload_type_is_explicit_when_it_differs_from_the_result() -> None:
    g = Graph()
    g.create("const", [], [TensorType((2,), DType.INT8)], {"value": DenseAttr(np.array([1, 2], np.int32))}, ["c"])
    g.outputs = [g.ops[0].result]
    text = print_graph(g)
    assert "dense<[1, 2]> : tensor<2xi32>} : tensor<2xi8>" in text
    assert print_graph(parse(text, verify=False)) == text


def test_inline_limit_and_nan_payloads() -> None:
    g = Graph()
    const(g, np.arange(4, dtype=np.int8), name="a")
    odd_nan = np.array([0x7FC00001, 0xFFC00000], np.uint32).view(np.float32)
    const(g, odd_nan, name="n")
    g.outputs = [op.result for op in g.ops]
    text = print_graph(g, inline_limit=2)
    assert 'dense<"0x00010203">' in text and 'dense<"0x0100c07f0000c0ff">' in text
    assert "dense<[0, 1, 2, 3]>" in print_graph(g, inline_limit=4)
    back = parse(text)
    assert back.ops[1].result.const_value.view(np.uint32).tolist() == [0x7FC00001, 0xFFC00000]


def test_resources_dict() -> None:
    g = Graph()
    const(g, np.arange(20, dtype=np.float32), name="w")
    const(g, np.arange(3, dtype=np.int8), name="s")
    g.outputs = [op.result for op in g.ops]
    res: dict[str, np.ndarray] = {}
    text = print_graph(g, resources=res)
    assert '%w = const() {value = dense_resource<"w">} : tensor<20xf32>' in text
    assert list(res) == ["w"] and "dense<[0, 1, 2]>" in text
    back = parse(text, resources=res)
    assert (back.ops[0].result.const_value == np.arange(20)).all()


# -- files and sidecars ------------------------------------------------------------------------------------------
def test_write_file_uses_a_sidecar_for_large_constants(tmp_path: Path) -> None:
    g = Graph("big")
    x = g.add_input(TensorType((1, 64), DType.FLOAT32), "x")
    w = const(g, np.random.default_rng(0).standard_normal((32, 64)).astype(np.float32), name="file")
    b = const(g, np.zeros(32, np.float32), name="b")
    g.outputs = [g.create("nn.fully_connected", [x, w, b], [TensorType((1, 32), DType.FLOAT32)], names=["y"]).result]
    path = tmp_path / "big.mir"
    write_file(g, path)
    text = path.read_text()
    assert 'dense_resource<"file">' in text and 'dense<"0x' in text  # 8 KiB goes to the sidecar, 128 B stays
    assert (tmp_path / "big.npz").is_file()
    back = parse_file(path)
    assert print_graph(back) == print_graph(g)
    write_file(g, path, npz_threshold_bytes=1 << 20)
    assert not (tmp_path / "big.npz").exists()
    assert "dense_resource" not in path.read_text()
    assert print_graph(parse_file(path)) == print_graph(g)


def test_parse_file_reports_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "bad.mir"
    path.write_text("graph @g() {\n  return %nope\n}\n")
    with pytest.raises(ParseError) as info:
        parse_file(path)
    assert str(info.value).startswith(f"{path}:2:10: error: use of undefined value %nope")


# -- errors ------------------------------------------------------------------------------------------------------
GOOD = ("graph @g(%x: tensor<1x4xi8, scale=0.5, zp=0>) {\n"
        "  %w = const() {value = dense<[1, 2, 3, 4, 5, 6, 7, 8]>} : tensor<2x4xi8, scale=0.25, zp=0>\n"
        "  %y = nn.fully_connected(%x, %w) : tensor<1x2xi8, scale=1.0, zp=0>\n"
        "  return %y\n"
        "}\n")


def _error(text: str, **kw) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse(text, "t.mir", **kw)
    return info.value


def _check(err: ParseError, line: int, at: str, *fragments: str, nth: int = 0) -> None:
    """``err`` is on ``line`` at the ``nth`` occurrence of ``at`` (1-based column), and says all ``fragments``."""
    index = -1
    for _ in range(nth + 1):
        index = err.source_line.index(at, index + 1)
    column = index + 1
    assert (err.filename, err.line, err.column) == ("t.mir", line, column), str(err)
    for f in fragments:
        assert f in err.message, err.message
    head, src, caret = str(err).split("\n")
    assert head == f"t.mir:{line}:{column}: error: {err.message}"
    assert src == "  " + err.source_line
    assert caret == "  " + " " * (column - 1) + "^"


def test_good_text_parses() -> None:
    assert print_graph(parse(GOOD)) == GOOD
    assert mir._parser() is mir._parser()  # built once per process


def test_syntax_error_says_what_was_expected() -> None:
    err = _error(GOOD.replace("scale=1.0, zp=0>", "scale=1.0 zp=0>"))
    _check(err, 3, "zp=0>", "unexpected 'zp'; expected ',' or '>'")
    err = _error(GOOD.replace("%y = nn", "%y nn"))
    _check(err, 3, "nn", "unexpected 'nn.fully_connected'; expected ',' or '='")
    err = _error(GOOD.replace("(%x, %w)", "(%x, )"))
    _check(err, 3, ")", "unexpected ')'; expected a %name")
    err = _error(GOOD.replace("{\n", "\n", 1))
    _check(err, 2, "%w", "unexpected '%w'; expected 'arena' or '{'")
    for name in ("COLON", "SSA_NAME", "RPAR", "$END"):
        assert name not in err.message


def test_syntax_error_at_end_of_input() -> None:
    err = _error(GOOD.replace("}\n", ""))
    assert (err.line, err.column, err.source_line) == (4, 12, "  return %y")
    assert "unexpected end of input; expected" in err.message and "'}'" in err.message


def test_one_graph_per_text() -> None:
    err = _error(GOOD + GOOD)
    _check(err, 6, "graph", "unexpected 'graph'; expected end of input (a .mir text holds one graph)")


def test_syntax_error_unexpected_character() -> None:
    err = _error(GOOD.replace("%y = nn", "%y # nn"))
    _check(err, 3, "#", "unexpected character '#'", "'='")


def test_undefined_name() -> None:
    err = _error(GOOD.replace("(%x, %w)", "(%x, %v)"))
    _check(err, 3, "%v", "use of undefined value %v")
    err = _error(GOOD.replace("return %y", "return %y, %z"))
    _check(err, 4, "%z", "use of undefined value %z")


def test_use_before_definition_is_undefined() -> None:
    err = _error(GOOD.replace("(%x, %w)", "(%x, %y)"))
    _check(err, 3, "%y", "use of undefined value %y", nth=1)


def test_name_defined_twice() -> None:
    err = _error(GOOD.replace("%y = nn", "%w = nn").replace("return %y", "return %w"))
    _check(err, 3, "%w", "%w is already defined (at line 2, column 3)")
    err = _error(GOOD.replace("%w = const", "%x = const"))
    _check(err, 2, "%x", "%x is already defined (at line 1, column 10)")


def test_unknown_op_kind_lists_known_ops() -> None:
    err = _error(GOOD.replace("nn.fully_connected", "nn.fully_konnected"))
    _check(err, 3, "nn.", "unknown op 'nn.fully_konnected'", "known ops:", "nn.conv2d", "nn.fully_connected")


def test_wrong_number_of_result_types() -> None:
    err = _error(GOOD.replace(" : tensor<1x2xi8, scale=1.0, zp=0>", " : tensor<1x2xi8>, tensor<2xi8>"))
    _check(err, 3, ": tensor", "nn.fully_connected has 1 result but 2 result types")
    err = _error(GOOD.replace(" : tensor<1x2xi8, scale=1.0, zp=0>", ""))
    _check(err, 3, "nn.", "has 1 result but 0 result types")


def test_bad_dtype() -> None:
    err = _error(GOOD.replace("tensor<1x4xi8", "tensor<1x4xi9"))
    _check(err, 1, "i9", "unknown element type 'i9'", "i8, u8, i16, i32, f32")


def test_bad_shapes() -> None:
    _check(_error(GOOD.replace("tensor<1x4xi8", "tensor<1x4")), 1, "4,", "missing element type")
    _check(_error(GOOD.replace("tensor<1x4xi8", "tensor<1xx4xi8")), 1, "x4xi8", "'' is not a dimension")
    _check(_error(GOOD.replace("tensor<1x4xi8", "tensor<1xBxi8")), 1, "B", "'B' is not a dimension")
    _check(_error(GOOD.replace("tensor<1x4xi8", "tensor<-1x4xi8")), 1, "-", "unexpected '-1'",
           "a shape and element type")


def test_bad_type_parameters() -> None:
    def check(new: str, at: str, *fragments: str) -> None:
        _check(_error(GOOD.replace("scale=0.5, zp=0>", new)), 1, at, *fragments)

    check("zp=0, scale=0.5>", "zp", "unexpected type parameter 'zp'", "'scale' or 'layout'")
    check("scale=0.5>", "scale", "'scale' must be followed by 'zp'")
    check("scale=0.5, zp=0, layout=\"NHWC\", axis=1>", "axis", "unexpected type parameter 'axis'; expected '>'")
    check("scale=-0.5, zp=0>", "scale", "scale must be positive")
    check("scale=[0.5], zp=[0]>", "[0.5]", "needs an 'axis'")
    check("scale=[0.5], zp=[0], axis=2>", "2>", "'axis' must be an integer in [0, 2)")
    check("scale=0.5, zp=0.5>", "0.5>", "'zp' must be an integer")
    check("scale=0.5, zp=0, layout=1>", "1>", "layout must be a string")


def test_dense_payload_size_mismatch() -> None:
    err = _error(GOOD.replace("[1, 2, 3, 4, 5, 6, 7, 8]", "[1, 2, 3]"))
    _check(err, 2, "dense", "dense payload has 3 elements but tensor<2x4xi8> needs 8")
    err = _error(GOOD.replace("[1, 2, 3, 4, 5, 6, 7, 8]", '"0x0102"'))
    _check(err, 2, "dense", "dense payload has 2 bytes but tensor<2x4xi8> needs 8")


def test_dense_element_errors() -> None:
    def check(new: str, at: str, *fragments: str) -> None:
        _check(_error(GOOD.replace("[1, 2, 3, 4, 5, 6, 7, 8]", new)), 2, at, *fragments)

    check("[1, 2, 3, 4, 5, 6, 7, 300]", "300", "300 is not a valid i8 element")
    check("[1, 2, 3, 4, 5, 6, 7, 0.5]", "0.5", "0.5 is not a valid i8 element")
    check("[1, 2, 3, 4, 5, 6, 7, true]", "true", "dense list elements must be numbers")
    check('"0xzz"', '"0xzz"', "invalid hex")
    check('"abc"', '"abc"', "must be hex bytes")


def test_dense_needs_a_type_outside_const() -> None:
    text = GOOD.replace("(%x, %w)", "(%x, %w) {v = dense<[1]>}")
    _check(_error(text, verify=False), 3, "dense", "needs its type here")


def test_missing_resource_key() -> None:
    text = GOOD.replace("dense<[1, 2, 3, 4, 5, 6, 7, 8]>", 'dense_resource<"w">')
    _check(_error(text), 2, '"w"', "unknown resource 'w'", "no resources were given")
    _check(_error(text, resources={"v": np.zeros(8, np.int8)}), 2, '"w"', "the sidecar .npz has no such array")
    _check(_error(text, resources={"w": np.zeros(8, np.int16)}), 2, '"w"', "resource 'w' holds 8 elements of int16")
    assert parse(text, resources={"w": np.arange(8, dtype=np.int8)}).ops[0].result.const_value.shape == (2, 4)


def test_bad_string_escape() -> None:
    err = _error(GOOD.replace("%y", '%"a\\qb"'))
    _check(err, 3, "%", "invalid string escape")


def test_bad_attribute_values() -> None:
    def check(new: str, at: str, *fragments: str) -> None:
        _check(_error(GOOD.replace("(%x, %w)", f"(%x, %w) {{{new}}}")), 3, at, *fragments)

    check("act_min = maybe", "maybe", "unexpected word 'maybe'")
    check("pads = [1, [2]]", "[2]", "list elements must be numbers")
    check('pads = [1, "a"]', '"a"', "list elements must be numbers")
    check("a = 1, a = 2", "a = 2", "attribute 'a' is given twice")


def test_verifier_error_is_located_at_the_op() -> None:
    err = _error(GOOD.replace("tensor<1x2xi8, scale=1.0", "tensor<1x3xi8, scale=1.0"))
    _check(err, 3, "%y", "%y = nn.fully_connected: result %y has shape 1x3 but the op gives 1x2")
    err = _error(GOOD.replace("(%x, %w)", "(%x, %w) {strides = [1, 1]}"))
    _check(err, 3, "%y", "unknown attribute 'strides'")
    assert parse(GOOD.replace("tensor<1x2xi8, scale=1.0", "tensor<1x3xi8, scale=1.0"), verify=False).ops


# -- user op kinds and random graphs -----------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def any_op_kind():
    """A test-only op kind with any operands, results and attributes (parsed with verify=False)."""
    name = "test.any"
    if name not in opdef.known_ops():
        register_op(OpDef(name=name, summary="anything, for parser tests", operands=("x*",),
                          infer=lambda op: [Inferred(r.type.shape) for r in op.results],
                          reference=lambda op, xs: list(xs)))
    yield name
    opdef._OPS.pop(name, None)


def test_user_op_kinds_need_no_grammar_change() -> None:
    text = ('graph @g(%a: tensor<2xi8>) {\n  %r0, %r1 = test.any(%a, %a) {"graph" = 1, return_ = "x"} '
            ": tensor<2xi8>, tensor<f32>\n  test.any(%r1)\n  return %r0\n}\n")
    g = parse(text, verify=False)
    assert [len(op.results) for op in g.ops] == [2, 0]
    assert g.ops[0].attrs == {"graph": 1, "return_": "x"}
    assert print_graph(g) == text


_BARE = st.from_regex(r"[A-Za-z0-9_.$\-]{1,6}", fullmatch=True)
_NAMES = st.one_of(st.none(), st.sampled_from(["x", "x_1", "0", "1", "graph", "a b"]), _BARE, st.text(max_size=5))
_SHAPES = st.lists(st.integers(0, 3), max_size=3).map(tuple)


@st.composite
def _quant(draw, shape: tuple[int, ...]) -> QuantParams | None:
    kind = draw(st.sampled_from(["none", "tensor", "channel"]))
    scales = st.floats(min_value=1e-30, max_value=1e30, allow_subnormal=False)
    zps = st.integers(-(2**40), 2**40)
    if kind == "tensor":
        return QuantParams((draw(scales),), (draw(zps),))
    axes = [i for i, d in enumerate(shape) if d > 0]
    if kind == "channel" and axes:
        axis = draw(st.sampled_from(axes))
        n = shape[axis]
        return QuantParams(tuple(draw(st.lists(scales, min_size=n, max_size=n))),
                           tuple(draw(st.lists(zps, min_size=n, max_size=n))), axis)
    return None


@st.composite
def _types(draw, shape: tuple[int, ...] | None = None, dtype: DType | None = None) -> TensorType:
    shape = draw(_SHAPES) if shape is None else shape
    dtype = draw(st.sampled_from(list(DType))) if dtype is None else dtype
    layout = draw(st.one_of(st.none(), st.sampled_from(["NHWC", "NCHW"]), st.text(max_size=3)))
    return TensorType(shape, dtype, draw(_quant(shape)), layout)


@st.composite
def _arrays(draw) -> np.ndarray:
    dtype = draw(st.sampled_from(list(DType)))
    shape = draw(st.sampled_from([(), (0,), (3,), (2, 2), (4, 5), (17,), (2, 3, 3)]))
    n = int(np.prod(shape, dtype=np.int64))
    if dtype is DType.FLOAT32 and draw(st.booleans()):
        vals = draw(st.lists(st.floats(width=32), min_size=n, max_size=n))
        return np.array(vals, np.float32).reshape(shape)
    raw = draw(st.binary(min_size=n * dtype.itemsize, max_size=n * dtype.itemsize))
    return np.frombuffer(raw, dtype.np).reshape(shape).copy()


_FLOATS = st.floats(allow_nan=True, allow_infinity=True)
_ATTR_VALUES = st.one_of(
    st.integers(), _FLOATS, st.booleans(), st.text(max_size=6),
    st.lists(st.integers(), max_size=4).map(tuple), st.lists(_FLOATS, min_size=1, max_size=4).map(tuple),
    _arrays().map(DenseAttr))


@st.composite
def _graphs(draw) -> Graph:
    g = Graph(draw(st.text(max_size=6)))
    values = [g.add_input(draw(_types()), draw(_NAMES)) for _ in range(draw(st.integers(0, 3)))]
    for _ in range(draw(st.integers(0, 5))):
        if draw(st.booleans()):
            arr = draw(_arrays())
            dt = DType.from_np(arr.dtype)
            same = draw(st.booleans())
            t = draw(_types(arr.shape, dt)) if same else draw(_types())
            op = g.append(Op("const", [], [t], {"value": DenseAttr(arr)}, [draw(_NAMES)]))
        else:
            operands = draw(st.lists(st.sampled_from(values), max_size=3)) if values else []
            types = draw(st.lists(_types(), max_size=3))
            attrs = draw(st.dictionaries(st.one_of(st.text(max_size=5), st.sampled_from(["a", "value", "dense"])),
                                         _ATTR_VALUES, max_size=4))
            names = [draw(_NAMES) for _ in types]
            op = g.append(Op("test.any", operands, types, attrs, names))
        values += op.results
    if values:
        g.outputs = draw(st.lists(st.sampled_from(values), max_size=3))
    return g


def _same_attr(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same_attr(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _assert_same_graph(g: Graph, h: Graph) -> None:
    assert g.name == h.name
    assert [v.type for v in g.inputs] == [v.type for v in h.inputs]
    assert len(g.ops) == len(h.ops)
    index = {}
    for i, v in enumerate(g.values()):
        index[id(v)] = i
    hindex = {id(v): i for i, v in enumerate(h.values())}
    for a, b in zip(g.ops, h.ops, strict=True):
        assert a.kind == b.kind
        assert [r.type for r in a.results] == [r.type for r in b.results]
        assert [index[id(v)] for v in a.operands] == [hindex[id(v)] for v in b.operands]
        assert a.attrs.keys() == b.attrs.keys()
        for k in a.attrs:
            assert _same_attr(a.attrs[k], b.attrs[k]), (k, a.attrs[k], b.attrs[k])
    assert [index[id(v)] for v in g.outputs] == [hindex[id(v)] for v in h.outputs]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(g=_graphs(), inline_limit=st.sampled_from([0, 4, 16]), use_resources=st.booleans())
def test_random_graphs_round_trip(g: Graph, inline_limit: int, use_resources: bool) -> None:
    res: dict[str, np.ndarray] | None = {} if use_resources else None
    text = print_graph(g, inline_limit=inline_limit, resources=res)
    h = parse(text, resources=res, verify=False)
    _assert_same_graph(g, h)
    res2: dict[str, np.ndarray] | None = {} if use_resources else None
    assert print_graph(h, inline_limit=inline_limit, resources=res2) == text
    if use_resources:
        assert res is not None and res2 is not None and res.keys() == res2.keys()
    names = [v.name for v in h.values()]
    assert len(names) == len(set(names))
