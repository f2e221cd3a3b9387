"""``bench/memory.py``: its mcc column is ``mcc analyze -O3``'s figure and its TFLM arena is sane."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from compiler.analyze_cmd import analyze
from compiler.pipelines import PatchOptions
from tests.models import model_path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "memory.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_memory", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_row_matches_analyze_and_tflm(tmp_path: Path) -> None:
    path = model_path("tflm/micro_speech_quantized.tflite")
    bench = _bench()
    row = bench.measure(path, tmp_path)
    a = analyze(path, opt_level=3, patch=PatchOptions(patches=1))
    assert row.sram == a.sram_bytes and row.patched == analyze(path, opt_level=3).sram_bytes <= row.sram
    assert row.lower_bound == a.plan.lower_bound and row.gap == a.plan.gap_bytes
    assert row.lower_bound <= row.arena <= row.no_overlap
    if row.tflm.status == "not installed":
        pytest.skip("tflite-micro is not installed")
    assert row.tflm.ok, row.tflm.status
    assert row.tflm.sram_head is not None and row.tflm.sram_bytes >= row.tflm.sram_head
    assert f"| {path.stem} | {row.sram:,} |" in bench.table([row], [])


def test_table_without_models() -> None:
    text = _bench().table([], ["every model: models/ not found"])
    assert "No model was measured." in text and "- skipped: every model" in text
