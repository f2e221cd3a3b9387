"""Run-time proof of the memory plan (guard bytes + watermark) and the ``mcc analyze`` command."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backends.c.guard import check_arena
from compiler.driver import compile_model, model_name
from tests.backend.harness import compile_to_c
from tests.backend.test_c_conv import _conv_graph
from tests.models import model_path

ROOT = Path(__file__).resolve().parents[1]


def _inputs(project: Path, seed: int = 0) -> list[np.ndarray]:
    report = json.loads((project / "report.json").read_text())
    rng = np.random.default_rng(seed)
    return [rng.integers(-128, 128, s["shape"]).astype(np.int8) for s in report["inputs"]]


def test_guard_passes_on_a_planned_graph(tmp_path):
    compile_to_c(_conv_graph(3, 1, (1, 1, 1, 1), 1, 3, 4), tmp_path / "c")
    result = check_arena(tmp_path / "c", "t", _inputs(tmp_path / "c"))
    assert result.ok, result
    assert result.guard_damage == () and result.outputs_stable
    assert result.declared_bytes == result.arena_bytes


def test_guard_catches_writes_outside_the_plan(tmp_path):
    project = tmp_path / "c"
    compile_to_c(_conv_graph(3, 1, (1, 1, 1, 1), 1, 3, 4), project)
    source = project / "t.c"
    text = source.read_text()
    call = re.search(r"mcc_conv(?:2d|_gemm)_s8\(.*\(int8_t \*\)\(arena \+ (\d+)\), ([^;]*)\);", text)
    assert call is not None
    arena = json.loads((project / "report.json").read_text())["arena_bytes"]
    # move the conv's output so that it runs past the end of the arena: the guard must see it
    source.write_text(text.replace(f"(int8_t *)(arena + {call.group(1)}), {call.group(2)});",
                                   f"(int8_t *)(arena + {arena - 40}), {call.group(2)});"))
    result = check_arena(project, "t", _inputs(project))
    assert not result.ok and result.guard_damage and max(result.guard_damage) >= arena


def test_guard_catches_an_over_reported_plan(tmp_path):
    project = tmp_path / "c"
    compile_to_c(_conv_graph(3, 1, (1, 1, 1, 1), 1, 3, 4), project)
    report = json.loads((project / "report.json").read_text())
    report["arena_bytes"] += 64  # a plan that claims more than the inference touches is a wrong figure too
    (project / "report.json").write_text(json.dumps(report))
    result = check_arena(project, "t", _inputs(project))
    assert not result.within_plan and not result.ok


@pytest.mark.parametrize("rel", ["derived_onnx/mlperf_tiny_vww_96_int8.qdq.onnx",
                                 "derived_onnx/mlperf_tiny_kws_ref_model_int8.qdq.onnx",
                                 "derived_onnx/mlperf_tiny_ic_resnet8_int8.qdq.onnx",
                                 "derived_onnx/mlperf_tiny_ad01_int8.qdq.onnx",
                                 "mlperf_tiny/vww_96_int8.tflite", "tflm/person_detect.tflite",
                                 "tinyengine/mcunet_vww.tflite"])
def test_guard_on_real_models(rel, tmp_path):
    path = model_path(rel)
    compile_model(path, tmp_path / "c", opt_level=3)
    result = check_arena(tmp_path / "c", model_name(path, None), _inputs(tmp_path / "c"))
    assert result.ok, result
    assert result.touched_bytes <= result.arena_bytes


def _mcc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "compiler.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


def test_analyze_table_json_and_plot(tmp_path):
    example = ROOT / "examples" / "tiny_cnn.mir"
    r = _mcc("analyze", str(example), "--target", "cortex-m4")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("<- peak") == 1 and "lower bound" in r.stdout and "fits" in r.stdout
    r = _mcc("analyze", str(example), "--json")
    data = json.loads(r.stdout)
    totals = data["totals"]
    assert totals["arena_bytes"] >= totals["lower_bound_bytes"] > 0
    assert data["fit"]["fits"] is True and data["peak_layer"]["op"]
    assert max(layer["live_bytes"] for layer in data["layers"]) == totals["lower_bound_bytes"]
    pytest.importorskip("matplotlib")
    png = tmp_path / "mem.png"
    r = _mcc("analyze", str(example), "--plot", str(png))
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_analyze_reports_a_model_that_does_not_fit():
    r = _mcc("analyze", str(ROOT / "examples" / "tiny_cnn.mir"), "--sram", "1000")
    assert r.returncode == 0 and "DOES NOT FIT" in r.stdout
