"""The memory plan in the IR: printed and parsed, checked by the verifier, dropped when a pass changes the graph,
and printed by the C backend exactly as the IR says."""

from __future__ import annotations

import re

import numpy as np
import pytest

from compiler.errors import MccError
from compiler.passmanager import PassManager, parse_pipeline
from compiler.printer import print_graph
from frontend.mir import parse
from tests.backend.harness import assert_c_matches_interpreter, compile_to_c

Q = "scale=0.1, zp=0"


def chain(x_at: str = "", e_at: str = "", r_at: str = "", arena: str = "") -> str:
    """A 1x1 conv on its int8 input bytes (``byte_column``: the GEMM kernel reads the pixel in place, no scratch)."""
    return f"""graph @chain(%x: tensor<1x4x4x2xi8, {Q}>{x_at}){arena} {{
  %w = const() {{value = dense<[1, 2, 3, 4, 5, 6, 7, 8]>}} : tensor<4x1x1x2xi8, scale=0.01, zp=0>
  %e = nn.conv2d(%x, %w) {{byte_column = true}} : tensor<1x4x4x4xi8, {Q}>{e_at}
  %r = nn.relu(%e) : tensor<1x4x4x4xi8, {Q}>{r_at}
  return %r
}}
"""


def test_a_planned_graph_round_trips():
    text = chain(" at 40", " at 0", " at 0", " arena 72")
    g = parse(text)
    assert g.arena_bytes == 72 and [v.offset for v in g.values() if v.name != "w"] == [40, 0, 0]
    assert print_graph(g) == text


@pytest.mark.parametrize(("text", "message"), [
    # the conv may start 34 B (40 aligned) below its input, not 32
    (chain(" at 32", " at 0", " at 0", " arena 72"), "%x and %e are live together and overlap"),
    (chain(" at 40", "", " at 0", " arena 72"), "%e has no arena offset"),
    (chain(" at 40", " at 0", " at 4", " arena 72"), "not 8-byte aligned"),
    (chain(" at 40", " at 0", " at 16", " arena 72"), "inside the 72 B arena"),
    (chain(" at 40", " at 0", " at 0"), "has an arena offset but the graph no arena size"),
])
def test_the_verifier_rejects_a_broken_plan(text, message):
    with pytest.raises(MccError, match=re.escape(message)):
        parse(text)


def test_a_pass_that_changes_the_graph_drops_the_plan():
    g = parse(chain())
    PassManager(parse_pipeline("plan-memory")).run(g)
    assert g.arena_bytes == 72
    assert not PassManager(parse_pipeline("plan-memory")).run(g)  # planning again changes nothing
    PassManager(parse_pipeline("fuse-activation")).run(g)  # folds the relu into the conv
    assert g.arena_bytes is None and all(v.offset is None for v in g.values())
    PassManager(parse_pipeline("plan-memory{overlap=false}")).run(g)
    assert g.arena_bytes == 32 + 64


def test_the_c_backend_prints_the_plan_of_the_ir(tmp_path):
    """A legal plan that is not the planner's choice (everything apart, in a larger arena) is what the C uses."""
    g = parse(chain(" at 200", " at 64", " at 0", " arena 256"))
    compile_to_c(g, tmp_path / "c")
    source = next((tmp_path / "c").glob("t.c")).read_text()
    assert "T_ARENA_BYTES 256" in (tmp_path / "c" / "t.h").read_text()
    assert "arena + 200" in source and "arena + 64" in source
    (tmp_path / "run").mkdir()
    assert_c_matches_interpreter(g, tmp_path / "run", n=4)


def test_the_planner_plan_runs_in_c(tmp_path):
    g = parse(chain())
    PassManager(parse_pipeline("plan-memory")).run(g)
    assert_c_matches_interpreter(g, tmp_path, n=4, sanitize=True)
    assert np.int64(g.arena_bytes) == 72
