"""Kernel scratch: the Python formula the planner uses equals the C kernel's own, and scratch lives in the plan."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.ir import DType, Graph, QuantParams, TensorType, const
from compiler.memory import plan_memory
from compiler.opdef import scratch_bytes
from compiler.ops.conv import gemm_row_split
from compiler.passmanager import PassManager, parse_pipeline
from compiler.verifier import verify
from tests.backend.harness import assert_c_matches_interpreter

RUNTIME = Path(__file__).resolve().parents[2] / "runtime_c"


def t8(shape: tuple[int, ...], scale: float = 0.1) -> TensorType:
    return TensorType(shape, DType.INT8, QuantParams.per_tensor(scale, 0))


def conv_graph(h: int, w: int, c: int, co: int, k: tuple[int, int], groups: int, pads: tuple[int, ...]) -> Graph:
    g = Graph("conv")
    x = g.add_input(t8((1, h, w, c)), "x")
    rng = np.random.default_rng(0)
    wt = const(g, rng.integers(-100, 100, (co, *k, c // groups)).astype(np.int8), t8((co, *k, c // groups), 0.01))
    oh, ow = h + pads[0] + pads[2] - k[0] + 1, w + pads[1] + pads[3] - k[1] + 1
    y = g.create("nn.conv2d", [x, wt], [t8((1, oh, ow, co), 0.2)], {"pads": pads, "groups": groups}, ["y"]).result
    g.outputs = [y]
    verify(g)
    return g


@pytest.fixture(scope="module")
def c_scratch(tmp_path_factory):
    """A host program printing ``mcc_conv2d_s8_scratch_bytes`` for parameter lines read from stdin."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    d = tmp_path_factory.mktemp("scratch")
    (d / "main.c").write_text(
        '#include <stdio.h>\n#include "mcc_kernels.h"\n'
        "int main(void) {\n    mcc_conv_params p = {0};\n"
        '    while (scanf("%d %d %d %d", &p.k_h, &p.k_w, &p.in_c, &p.groups) == 4) {\n'
        '        printf("%zu\\n", mcc_conv2d_s8_scratch_bytes(&p));\n    }\n    return 0;\n}\n')
    exe = d / "scratch"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", f"-I{RUNTIME}", str(d / "main.c"),
                    str(RUNTIME / "mcc_conv2d.c"), "-o", str(exe)], check=True, capture_output=True)

    def query(rows: list[tuple[int, int, int, int]]) -> list[int]:
        text = "".join(f"{a} {b} {c} {d}\n" for a, b, c, d in rows)
        out = subprocess.run([str(exe)], input=text, capture_output=True, text=True, check=True).stdout
        return [int(x) for x in out.split()]

    return query


@settings(max_examples=25, deadline=None)
@given(kh=st.integers(1, 7), kw=st.integers(1, 7), cg=st.integers(1, 9), groups=st.integers(2, 3))
def test_python_scratch_formula_equals_the_c_kernels(c_scratch, kh, kw, cg, groups):
    """Several groups: the general kernel (mcc_conv2d.c; one group runs the GEMM kernel, tested below)."""
    g = conv_graph(8, 8, cg * groups, groups, (kh, kw), groups, (kh // 2, kw // 2, (kh - 1) // 2, (kw - 1) // 2))
    (conv,) = [op for op in g.ops if op.kind == "nn.conv2d"]
    assert scratch_bytes(conv) == c_scratch([(kh, kw, cg * groups, groups)])[0]


def test_scratch_is_planned_for_the_op_alone(tmp_path):
    g = conv_graph(6, 5, 4, 8, (3, 3), 2, (1, 1, 1, 1))
    (conv,) = [op for op in g.ops if op.kind == "nn.conv2d"]
    plan = plan_memory(g)
    (buf,) = [b for b in plan.buffers if b.op is conv]
    assert buf.size == 3 * 3 * 2 * 2 == plan.scratch_bytes and buf.values == ()
    x, y = g.inputs[0], g.outputs[0]
    for v in (x, y):  # live during the conv: no sharing with the scratch
        lo, hi = plan.offset(v), plan.offset(v) + v.type.nbytes
        assert hi <= buf.offset or buf.offset + buf.size <= lo
    assert plan.arena_bytes >= 6 * 5 * 4 + buf.size
    assert_c_matches_interpreter(g, tmp_path, n=4, sanitize=True)


def test_in_place_depthwise_scratch_equals_the_c_kernels(tmp_path):
    """The in-place depthwise kernel's plane: Python's formula against mcc_depthwise_planar_scratch_bytes, and the
    kernel (its result on exactly its input's bytes) against the interpreter."""
    from compiler.ops.conv import depthwise_in_place

    g = Graph("dw")
    x = g.add_input(t8((1, 5, 4, 48)), "x")
    rng = np.random.default_rng(2)
    wt = const(g, rng.integers(-100, 100, (1, 3, 3, 48)).astype(np.int8), t8((1, 3, 3, 48), 0.01))
    y = g.create("nn.depthwise_conv2d", [x, wt], [t8((1, 5, 4, 48), 0.2)], {"pads": (1, 1, 1, 1)}, ["y"]).result
    g.outputs = [g.create("nn.relu", [y], [y.type], {}, ["r"]).result]
    verify(g)
    dw = y.producer
    assert dw is not None and not depthwise_in_place(dw)
    PassManager(parse_pipeline("plan-memory")).run(g)  # a 5x4 plane (20 B) is far below 48 x (4 + 2) B
    assert depthwise_in_place(dw) and g.arena_bytes is not None
    d = tmp_path / "p"
    d.mkdir()
    (d / "main.c").write_text('#include <stdio.h>\n#include "mcc_kernels.h"\nint main(void) {\n'
                              "    mcc_conv_params p = {0};\n    p.in_h = 5;\n    p.in_w = 4;\n    p.in_c = 48;\n"
                              '    printf("%zu", mcc_depthwise_planar_scratch_bytes(&p));\n    return 0;\n}\n')
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", f"-I{RUNTIME}", str(d / "main.c"),
                    str(RUNTIME / "mcc_depthwise_planar.c"), "-o", str(d / "s")], check=True, capture_output=True)
    assert int(subprocess.run([str(d / "s")], capture_output=True, text=True, check=True).stdout) == \
        scratch_bytes(dw) == 20
    plan = plan_memory(g)
    assert plan.offset(y) == plan.offset(x)  # the result takes exactly the input's bytes
    assert_c_matches_interpreter(g, tmp_path, n=4, sanitize=True)


@pytest.fixture(scope="module")
def c_gemm_scratch(tmp_path_factory):
    """A host program printing ``mcc_conv_gemm_s8_scratch_bytes`` for parameter lines read from stdin."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    d = tmp_path_factory.mktemp("gemm_scratch")
    (d / "main.c").write_text(
        '#include <stdio.h>\n#include "mcc_kernels.h"\n'
        "int main(void) {\n    mcc_gemm_params p = {0};\n"
        '    while (scanf("%d %d %d %d %d %d %d %d %d %d %d %d", &p.k_h, &p.k_w, &p.in_c, &p.in_h, &p.in_w, &p.out_h,\n'
        "                 &p.out_w, &p.stride_h, &p.stride_w, &p.pad_top, &p.pad_left, &p.column) == 12) {\n"
        '        printf("%zu\\n", mcc_conv_gemm_s8_scratch_bytes(&p));\n    }\n    return 0;\n}\n')
    exe = d / "scratch"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", f"-I{RUNTIME}", str(d / "main.c"),
                    str(RUNTIME / "mcc_gemm.c"), "-o", str(exe)], check=True, capture_output=True)

    def query(row: tuple[int, ...]) -> int:
        text = " ".join(str(v) for v in row) + "\n"
        return int(subprocess.run([str(exe)], input=text, capture_output=True, text=True, check=True).stdout)

    return query


@settings(max_examples=25, deadline=None)
@given(kh=st.integers(1, 4), kw=st.integers(1, 4), c=st.integers(1, 9), s=st.integers(1, 3),
       pads=st.tuples(*[st.integers(0, 2)] * 4), byte_column=st.booleans())
def test_python_scratch_formula_equals_the_gemm_kernels(c_gemm_scratch, kh, kw, c, s, pads, byte_column):
    """groups == 1 and symmetric weights: the GEMM kernel (an int16 column; with byte_column, direct 1x1 or an
    int8 im2col column)."""
    pads = tuple(min(p, k - 1) if p else 0 for p, k in zip(pads, (kh, kw, kh, kw), strict=True))
    g = Graph("conv")
    x = g.add_input(t8((1, 7, 6, c)), "x")
    wt = const(g, np.ones((3, kh, kw, c), np.int8), t8((3, kh, kw, c), 0.01))
    oh, ow = (7 + pads[0] + pads[2] - kh) // s + 1, (6 + pads[1] + pads[3] - kw) // s + 1
    y = g.create("nn.conv2d", [x, wt], [t8((1, oh, ow, 3), 0.2)], {"pads": pads, "strides": (s, s)}, ["y"]).result
    g.outputs = [y]
    verify(g)
    (conv,) = [op for op in g.ops if op.kind == "nn.conv2d"]
    if byte_column:
        conv.attrs["byte_column"] = True
    column = 1 if byte_column else 2 if gemm_row_split(conv) else 0  # the C params' column
    assert scratch_bytes(conv) == c_gemm_scratch((kh, kw, c, 7, 6, oh, ow, s, s, pads[0], pads[1], column))
