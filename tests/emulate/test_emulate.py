"""Emulated Cortex-M runs (QEMU): outputs bit-exact with the host build, exact and reproducible instruction counts,
footprint from the ELF, and the command line. Skipped, with the reason, when QEMU or the Arm toolchain is absent."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backends.c.build import BuildError, run_host
from compiler.driver import compile_model
from compiler.emulate_cmd import random_c_batches
from compiler.errors import MccError
from tests.models import model_path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "tiny_cnn.mir"

pytestmark = [
    pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm is not installed"),
    pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc is not installed"),
]
elftools = pytest.importorskip("elftools", reason="pyelftools is not installed (pip install pyelftools)")

from backends.cortexm.emulate import EmulationResult, emulate  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, dict]:
    """The bundled tiny CNN (conv, depthwise, pointwise, residual add, mean, reshape, FC, softmax) compiled once."""
    out = tmp_path_factory.mktemp("emu") / "tiny"
    return out, compile_model(EXAMPLE, out, opt_level=3, target="cortex-m7")


def _host(project: Path, report: dict, batches: list[np.ndarray]) -> list[np.ndarray]:
    specs = [(tuple(o["shape"]), np.dtype(np.int8)) for o in report["outputs"]]
    return run_host(project, report["name"], batches, output_specs=specs)


@pytest.mark.parametrize("target", ["cortex-m7", "cortex-m4"])
def test_emulated_outputs_equal_host_build(tiny, target):
    project, report = tiny
    batches = random_c_batches(report, 4, seed=1)
    res = emulate(project, report, target, "O3", batches)
    host = _host(project, report, batches)
    assert res.samples == 4
    for got, want in zip(res.outputs, host, strict=True):
        np.testing.assert_array_equal(got, want)
    assert res.host_identical is True
    assert res.counting == "plugin" and res.program_instructions is not None
    assert res.board.machine == {"cortex-m7": "mps2-an500", "cortex-m4": "mps2-an386"}[target]


def _layer_counts(res: EmulationResult) -> list[tuple[str, int | None, int]]:
    return [(s.label, s.layer, s.instructions) for s in res.segments]


def test_counts_reproducible_and_layers_add_up(tiny):
    project, report = tiny
    batches = random_c_batches(report, 2, seed=2)
    a = emulate(project, report, "cortex-m7", "O3", batches, compare_host=False)
    b = emulate(project, report, "cortex-m7", "O3", batches, compare_host=False)
    assert _layer_counts(a) == _layer_counts(b)
    assert a.run_instructions == b.run_instructions and a.program_instructions == b.program_instructions
    for res in (a, b):
        # the layer rows add up exactly to the layer total, all segments exactly to the whole call
        assert sum(r.instructions or 0 for r in res.layers) == res.layer_instructions[0]
        assert sum(s.instructions for s in res.segments) == res.run_instructions[0]
        assert res.program_instructions > sum(res.run_instructions)
    by_name = {r.name: r for r in a.layers}
    assert by_name["flat"].instructions is None  # a reshape that aliases its input: no code, no mark
    assert all(r.instructions and r.instructions > 100 for r in a.layers if r.name != "flat")
    assert by_name["conv1"].macs == 13824 and by_name["conv1"].per_mac is not None
    assert a.segments[0].label == "input copy" and a.segments[-1].label == "output copy"


def test_systick_fallback_agrees_with_plugin_within_one_tick(tiny):
    project, report = tiny
    batches = random_c_batches(report, 1, seed=3)
    exact = emulate(project, report, "cortex-m4", "O3", batches, compare_host=False)
    tick = emulate(project, report, "cortex-m4", "O3", batches, counting="systick", compare_host=False)
    assert tick.counting == "systick" and tick.program_instructions is None
    assert [s.label for s in tick.segments] == [s.label for s in exact.segments]
    for s_exact, s_tick in zip(exact.segments, tick.segments, strict=True):
        assert s_tick.instructions % 40 == 0
        # ±40 from the tick, plus the SysTick build's hook reading the timer (a few more instructions)
        assert abs(s_tick.instructions - s_exact.instructions) <= 40 + 8, s_exact.label
    np.testing.assert_array_equal(tick.outputs[0], exact.outputs[0])


def test_plugin_unavailable_falls_back_to_systick(tiny, monkeypatch, tmp_path):
    project, report = tiny
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    res = emulate(project, report, "cortex-m7", "O3", random_c_batches(report, 1, seed=4), compare_host=False)
    assert res.counting == "systick" and "SysTick" in res.counting_note
    assert any("no host C compiler" in n for n in res.notes)
    with pytest.raises(MccError, match="cannot count with the plugin"):
        emulate(project, report, "cortex-m7", "O3", random_c_batches(report, 1, seed=4), counting="plugin")


def test_footprint_matches_arm_none_eabi_size(tiny):
    project, report = tiny
    res = emulate(project, report, "cortex-m7", "Os", random_c_batches(report, 1, seed=5), compare_host=False)
    out = subprocess.run(["arm-none-eabi-size", "-B", str(res.elf)], capture_output=True, text=True, check=True)
    text, data, bss = (int(x) for x in out.stdout.splitlines()[1].split()[:3])
    fp = res.footprint
    assert fp.flash_bytes == text + data
    assert fp.static_ram_bytes == data + bss
    # weights and tables are read-only data in flash; -Os compiles their size-first contents
    assert fp.rodata_bytes >= report["size_first_flash_bytes"]
    assert 0 < fp.harness_flash_bytes < fp.flash_bytes and 0 < fp.harness_ram_bytes < fp.static_ram_bytes
    assert fp.static_ram_bytes >= report["arena_bytes"] + fp.harness_ram_bytes
    # measured stack: nonzero and within the static call-graph bound (memcpy, outside the graph, is shallow)
    # the deepest call chain runs from the harness through the model into a kernel, with no dynamic allocation
    assert res.stack_bound.path[0] == "mcc_emu_invoke" and len(res.stack_bound.path) >= 3
    assert res.stack_bound.path[2].startswith("mcc_") and not res.stack_bound.dynamic
    assert 0 < res.stack_bytes <= res.stack_bound.bytes + 64
    assert res.stack_region_bytes == res.sram_budget - fp.static_ram_bytes
    assert res.sram_budget == 320 * 1024 and res.flash_budget == 1024 * 1024


def test_image_that_does_not_fit_the_targets_sram_does_not_link(tmp_path):
    project = tmp_path / "small"
    report = compile_model(EXAMPLE, project, opt_level=3, target="cortex-m7", sram=4096)
    with pytest.raises(BuildError, match="RAM"):
        emulate(project, report, "cortex-m7", "O3", random_c_batches(report, 1, seed=0), compare_host=False)


def test_vww_on_cortex_m7_matches_host(tmp_path):
    path = model_path("mlperf_tiny/vww_96_int8.tflite")
    project = tmp_path / "vww"
    report = compile_model(path, project, opt_level=3, target="cortex-m7")
    res = emulate(project, report, "cortex-m7", "O3", random_c_batches(report, 2, seed=0))
    assert res.host_identical is True
    assert res.macs == 7_491_968
    assert sum(r.instructions or 0 for r in res.layers) == res.layer_instructions[0]
    assert res.instructions > res.macs  # plain C kernels: more than one instruction per MAC
    assert res.footprint.flash_bytes > report["flash_bytes"]
    assert json.loads((project / "report.json").read_text()).get("emulation") is None  # emulate() alone records none


# -- command line ----------------------------------------------------------------------------------------------------

def mcc(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "compiler.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=300)


def _one_line_error(r: subprocess.CompletedProcess, code: int = 2) -> str:
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mcc: error: "), r.stderr
    return lines[0]


def test_cli_run_emulate_json_and_report(tiny, tmp_path):
    project, _ = tiny
    x = np.random.default_rng(0).integers(-128, 128, (1, 16, 16, 3)).astype(np.int8)
    np.save(tmp_path / "x.npy", x)
    r = mcc("run", str(project), "--input", str(tmp_path / "x.npy"), "--emulate", "cortex-m4", "--opt", "Os",
            "--json", "--output", str(tmp_path / "y.npy"))
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["target"] == "cortex-m4" and data["c_opt"] == "-Os" and data["host_identical"] is True
    assert data["instructions"] == sum(s["instructions"] for s in data["segments"])
    assert data["flash_bytes"] > 0 and data["stack_bytes"] > 0
    host = mcc("run", str(project), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "h.npy"))
    assert host.returncode == 0, host.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), np.load(tmp_path / "h.npy"))
    recorded = json.loads((project / "report.json").read_text())["emulation"]["cortex-m4-Os"]
    assert recorded["instructions"] == data["instructions"] and recorded["stack_bytes"] == data["stack_bytes"]


def test_cli_bench_table_and_plot(tmp_path):
    r = mcc("bench", str(EXAMPLE), "--target", "cortex-m7", "--plot", str(tmp_path / "b.png"))
    assert r.returncode == 0, r.stderr
    assert "outputs bit-identical to the host build" in r.stdout
    for text in ("instr/MAC", "nn.depthwise_conv2d", "no code", "instructions per MAC", "flash", "stack",
                 "exact, QEMU TCG plugin"):
        assert text in r.stdout
    assert (tmp_path / "b.png").stat().st_size > 1000


def test_cli_errors_are_one_line(tiny, tmp_path):
    project, _ = tiny
    np.save(tmp_path / "x.npy", np.zeros((1, 16, 16, 3), np.int8))
    x = str(tmp_path / "x.npy")
    assert "cannot emulate 'cortex-m99'" in _one_line_error(mcc("run", str(project), "--input", x, "--emulate",
                                                                "cortex-m99"))
    assert "cannot emulate 'cortex-m0plus'" in _one_line_error(mcc("bench", str(EXAMPLE), "--target",
                                                                   "cortex-m0plus"))
    assert "unknown C optimisation level 'O9'" in _one_line_error(mcc("run", str(project), "--input", x,
                                                                      "--emulate", "cortex-m7", "--opt", "O9"))
    no_qemu = mcc("run", str(project), "--input", x, "--emulate", "cortex-m7", env={"PATH": str(tmp_path)})
    assert "qemu-system-arm is not installed" in _one_line_error(no_qemu)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "qemu-system-arm").write_text("#!/bin/sh\nexit 1\n")
    (fake / "qemu-system-arm").chmod(0o755)
    no_gcc = mcc("run", str(project), "--input", x, "--emulate", "cortex-m7", env={"PATH": str(fake)})
    assert "arm-none-eabi-gcc is not installed" in _one_line_error(no_gcc)
    assert "not an mcc project" in _one_line_error(mcc("run", str(tmp_path), "--input", x, "--emulate",
                                                       "cortex-m7"))


def test_patched_and_streamed_mcunet_on_cortex_m7_equals_per_layer_inference(tmp_path):
    """Issue 7: patch-based inference with a streamed input, emulated on Cortex-M7, gives what per-layer inference
    gives in the reference interpreter, bit for bit."""
    from compiler.driver import prepare_model
    from compiler.interpreter import run
    from compiler.pipelines import PatchOptions

    path = model_path("tinyengine/mcunet_vww.tflite")
    project = tmp_path / "mcunet"
    report = compile_model(path, project, opt_level=3, target="cortex-m7", patch=PatchOptions(stream_input=True))
    assert report["patch_stage"]["patches"] >= 2 and report["patch_stage"]["stream_input"]
    batches = random_c_batches(report, 2, seed=3)
    res = emulate(project, report, "cortex-m7", "O3", batches)
    per_layer = prepare_model(path, opt_level=3, patch=PatchOptions(patches=1)).graph
    for k in range(2):
        (want,) = run(per_layer, [batches[0][k]])
        np.testing.assert_array_equal(res.outputs[0][k], want)
    assert res.host_identical is True
