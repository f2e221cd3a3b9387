"""The instruction counts are exact: a hand-written probe project runs known instruction sequences between marks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytestmark = [
    pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm is not installed"),
    pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc is not installed"),
]
pytest.importorskip("elftools", reason="pyelftools is not installed (pip install pyelftools)")

from backends.cortexm.emulate import emulate  # noqa: E402
from backends.cortexm.qemu import EmulationError  # noqa: E402

MARK_COST = 11
"""movs r0, #k; bl mcc_emu_layer_hook; the hook's 9 instructions (harness always built at -O2)."""

PROBE_C = """\
#include <stdint.h>

#include "probe.h"

#ifndef MCC_LAYER_HOOK
#define MCC_LAYER_HOOK(index) ((void)0)
#endif

int probe_run(const probe_inputs *in, probe_outputs *out, uint8_t *arena) {
    (void)arena;
    MCC_LAYER_HOOK(0);
    MCC_LAYER_HOOK(1);
    __asm__ volatile(".rept 100\\n\\tnop\\n\\t.endr");
    MCC_LAYER_HOOK(2);
    __asm__ volatile(".rept 1000\\n\\tnop\\n\\t.endr");
    MCC_LAYER_HOOK(3);
    for (int i = 0; i < 4; ++i) {
        out->y[i] = (int8_t)(in->x[i] + 1);
    }
    return 0;
}
"""

PROBE_H = """\
#ifndef PROBE_H
#define PROBE_H
#include <stdint.h>
#define PROBE_INPUT_X_BYTES 4
#define PROBE_OUTPUT_Y_BYTES 4
typedef struct { const int8_t *x; } probe_inputs;
typedef struct { int8_t *y; } probe_outputs;
int probe_run(const probe_inputs *in, probe_outputs *out, uint8_t *arena);
#endif
"""


def _write_probe(d: Path, source: str) -> dict:
    (d / "probe.c").write_text(source)
    (d / "probe.h").write_text(PROBE_H)
    (d / "probe_weights.c").write_text("#include <stdint.h>\nconst int8_t probe_unused[1] = {0};\n")
    report = {
        "name": "probe", "macs": 0, "arena_bytes": 0,
        "target": {"name": "cortex-m7", "cpu": "cortex-m7", "sram_bytes": 320 * 1024, "flash_bytes": 1 << 20},
        "inputs": [{"name": "x", "c_field": "x", "shape": [4], "dtype": "i8"}],
        "outputs": [{"name": "y", "c_field": "y", "shape": [4], "dtype": "i8"}],
        "layers": [{"name": n, "op": "probe", "macs": 0} for n in ("empty", "nop100", "nop1000")],
    }
    (d / "report.json").write_text(json.dumps(report))
    return report


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> tuple[Path, dict]:
    d = tmp_path_factory.mktemp("probe")
    return d, _write_probe(d, PROBE_C)


@pytest.mark.parametrize(("target", "opt"), [("cortex-m7", "O3"), ("cortex-m7", "O0"), ("cortex-m4", "Os")])
def test_known_instruction_sequences_are_counted_exactly(probe, target, opt):
    project, report = probe
    x = np.array([[1, 2, 3, -128]], dtype=np.int8)
    res = emulate(project, report, target, opt, [x], counting="plugin", compare_host=False)
    np.testing.assert_array_equal(res.outputs[0], [[2, 3, 4, -127]])
    by_name = {r.name: r.instructions for r in res.layers}
    assert by_name == {"empty": MARK_COST, "nop100": MARK_COST + 100, "nop1000": MARK_COST + 1000}


def test_a_fault_in_the_model_is_a_clear_error(tmp_path):
    marker = '__asm__ volatile(".rept 100'
    faulting = PROBE_C.replace(marker, '__asm__ volatile("udf #0");\n    ' + marker)
    report = _write_probe(tmp_path, faulting)
    with pytest.raises(EmulationError, match="took a fault"):
        emulate(tmp_path, report, "cortex-m7", "O2", [np.zeros((1, 4), np.int8)], compare_host=False)
