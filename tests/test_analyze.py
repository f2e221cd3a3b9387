"""``mcc analyze``: the per-layer table, its JSON form, the plot, and agreement with what compilation reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compiler.analysis import layer_table, weight_bytes
from compiler.analyze_cmd import cmd_analyze
from compiler.driver import compile_model, prepare_model
from compiler.errors import MccError
from compiler.memory import plan_memory
from compiler.ops.conv import depthwise_in_place, gemm_conv, gemm_conv_direct
from tests.models import model_path

TINY = Path(__file__).resolve().parents[1] / "examples" / "tiny_cnn.mir"


def _json(capsys, *args: str) -> dict:
    assert cmd_analyze([str(TINY), *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_table_marks_the_peak_layer_and_prints_bound_and_fit(capsys):
    assert cmd_analyze([str(TINY), "-O", "3"]) == 0
    out = capsys.readouterr().out
    peak_lines = [ln for ln in out.splitlines() if ln.rstrip().endswith("<- peak")]
    assert len(peak_lines) == 1
    for word in ("MACs", "weights", "live", "scratch", "lower bound", "gap", "SRAM", "flash", "fits"):
        assert word in out
    assert "DOES NOT FIT" not in out


def test_json_is_consistent_with_the_plan(capsys):
    data = _json(capsys, "-O", "3")
    layers = data["layers"]
    peak = data["peak_layer"]
    assert layers[peak["layer"]]["peak"] and sum(r["peak"] for r in layers) == 1
    assert layers[peak["layer"]]["live_bytes"] == max(r["live_bytes"] for r in layers)
    totals = data["totals"]
    assert totals["lower_bound_bytes"] <= totals["arena_bytes"] == totals["peak_sram_bytes"]
    assert totals["gap_bytes"] == totals["arena_bytes"] - totals["lower_bound_bytes"]
    assert totals["macs"] == sum(r["macs"] for r in layers)
    assert totals["weight_bytes"] == sum(r["weight_bytes"] for r in layers) <= totals["flash_bytes"]
    assert data["fit"]["fits"] is True and data["flash_note"] == ""


def test_small_budget_does_not_fit(capsys):
    data = _json(capsys, "--sram", "1000")
    assert data["fit"]["fits"] is False and data["fit"]["sram_available"] == 1000
    assert cmd_analyze([str(TINY), "--flash", "100"]) == 0
    assert "DOES NOT FIT" in capsys.readouterr().out


def test_the_numbers_are_the_ones_compilation_reports(tmp_path, capsys):
    data = _json(capsys, "-O", "2")
    report = compile_model(TINY, tmp_path / "c", opt_level=2)
    assert data["totals"]["arena_bytes"] == report["arena_bytes"]
    assert data["totals"]["flash_bytes"] == report["flash_bytes"]
    assert data["totals"]["macs"] == report["macs"]
    assert [r["live_bytes"] for r in data["layers"]] == [r["live_bytes"] for r in report["layers"]]


def test_layer_table_counts_each_weight_once():
    graph = prepare_model(TINY, opt_level=0).graph
    rows = layer_table(graph, plan_memory(graph))
    used = {v.producer for op in graph.ops for v in op.operands
            if v.producer is not None and v.producer.kind == "const"}
    assert sum(r.weight_bytes for r in rows) == sum(c.result.type.nbytes for c in used) <= weight_bytes(graph)
    for r in rows:  # scratch: the GEMM conv kernel's int16 column (taps rounded up to 4), the general int8 conv
        op = graph.ops[r.index]  # kernel's int16 im2col column when the window has >1 tap
        assert r.op == op.kind != "const"
        want = 0
        if op.kind == "nn.depthwise_conv2d" and depthwise_in_place(op):  # one H x W input channel
            want = op.operands[0].type.shape[1] * op.operands[0].type.shape[2]
        if op.kind == "nn.conv2d" and op.operands[0].type.dtype.value == "i8":
            _, kh, kw, cg = op.operands[1].type.shape
            if gemm_conv(op):
                want = 2 * ((kh * kw * cg + 3) // 4 * 4)
                if op.attrs.get("byte_column"):  # raw bytes: a 1x1 pixel in place, else an int8 column
                    want = 0 if gemm_conv_direct(op) else want // 2
            else:
                want = 2 * kh * kw * cg if kh * kw > 1 else 0
        assert r.scratch_bytes == want


def test_plot_is_written(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "mem.png"
    assert cmd_analyze([str(TINY), "--plot", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {out}" in capsys.readouterr().out


def test_missing_model_is_a_user_error():
    with pytest.raises(MccError, match="no such model file"):
        cmd_analyze(["does-not-exist.onnx"])


def test_real_model_table(capsys):
    path = model_path("derived_onnx/mlperf_tiny_vww_96_int8.qdq.onnx")
    assert cmd_analyze([str(path), "-O", "3", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    totals = data["totals"]
    # issue 5's target for this model; the per-op bound counts each overlap on its own, which a chain of
    # overlapping ops cannot always reach all at once (each result sits a little below its operand), so the gap
    # is small but need not be 0
    assert totals["lower_bound_bytes"] <= totals["arena_bytes"] <= 50_000 and data["fit"]["fits"]
