"""A trained network to int8 C and its accuracy: ONNX export, ``mcc -O3`` with calibration, the C on the test set.

The same steps as ``make demo`` (``examples/fashion_mnist.py``): export float ONNX, compile with ``mcc`` using
training images for calibration, build the generated C for the host (``mcc run``) and classify every test image
with it. Peak SRAM, flash and MACs come from the project's ``report.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compiler.driver import compile_model
from compiler.pipelines import PatchOptions
from compiler.runner import run_project
from nas.space import Arch
from nas.torch_model import export_onnx


@dataclass(frozen=True)
class Deployed:
    """What a network became: accuracies (float PyTorch, int8 C), the compiler's figures, and where it is."""

    float_accuracy: float
    int8_accuracy: float
    peak_sram_bytes: int
    flash_bytes: int
    macs: int
    project: str

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return asdict(self)


def deploy(module: Any, arch: Arch, x_cal: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, out_dir: Path, *,
           target: str, opt_level: int = 3, patch: PatchOptions | None = None,
           float_accuracy: float = float("nan")) -> Deployed:
    """Export ``module`` (images already at ``arch.resolution``), compile it with ``mcc -O opt_level --target
    target --calibration x_cal`` (``patch``: as ``--patches``) into ``out_dir/c``, run the C on ``x_test`` and
    measure its top-1 accuracy."""
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = export_onnx(arch, out_dir / "model.onnx", module)
    cal = out_dir / "calibration.npy"
    np.save(cal, x_cal.astype(np.float32))
    project = out_dir / "c"
    report = compile_model(onnx_path, project, opt_level=opt_level, target=target, calibration=str(cal),
                           name="model", patch=patch)
    logits = run_project(project, {"image": x_test.astype(np.float32)})
    out = next(iter(logits.values()))
    int8 = float(np.mean(out.reshape(len(y_test), -1).argmax(1) == y_test))
    result = Deployed(float_accuracy, int8, int(report["peak_sram_bytes"]), int(report["flash_bytes"]),
                      int(report["macs"]), str(project))
    (out_dir / "result.json").write_text(json.dumps(result.to_dict(), indent=2))
    return result
