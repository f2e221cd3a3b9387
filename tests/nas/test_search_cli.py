"""``mcc-nas search``: the whole pipeline on a tiny synthetic dataset, resume, and one-line errors."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from nas.cli import main

pytest.importorskip("torch")


def _toy(path: Path, n: int = 700) -> Path:
    """Four classes of 16x16 grey images, each with a bright band in its own rows: easy to learn."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, n)
    x = rng.random((n, 16, 16), dtype=np.float32) * 0.3
    for c in range(4):
        x[y == c, 4 * c:4 * c + 4, :] += 0.6
    x8 = (x.clip(0, 1) * 255).astype(np.uint8)
    np.savez(path, x_train=x8[:600], y_train=y[:600], x_test=x8[600:], y_test=y[600:])
    return path


ARGS = ["--budget", "tiny", "--resolutions", "16", "--widths", "0.25", "-O", "1", "--threads", "1"]


def test_search_end_to_end_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _toy(tmp_path / "toy.npz")
    out = tmp_path / "run"
    argv = ["search", "--data", str(data), *ARGS, "--sram", "20000", "--flash", "80000", "--no-baseline",
            "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    row = report["rows"][0]
    # the compiled winner (report.json of its C project) is within the budgets, and its C ran on the test set
    assert row["peak_sram_bytes"] <= 20000 and row["flash_bytes"] <= 80000
    assert 0.0 <= row["int8_accuracy"] <= 1.0 and (out / "winner" / "c" / "report.json").is_file()
    assert (out / "pareto.png").stat().st_size > 1000 and "int8 C acc." in (out / "report.md").read_text()
    assert "winner:" in text and report["evaluated"] >= 4
    # every candidate the evolution evaluated was within the (margin-reduced) flash budget and the SRAM budget
    evo = json.loads((out / "evolution.json").read_text())
    assert all(evo["costs"][k]["peak_sram_bytes"] <= 20000 and evo["costs"][k]["flash_bytes"] <= 80000 * 0.85
               for k in evo["fitness"])
    # resume: every step is done, the same report comes back
    assert main([*argv, "--resume"]) == 0
    again = json.loads((out / "report.json").read_text())
    assert again["rows"] == report["rows"] and again["winner"] == report["winner"]


@pytest.mark.parametrize("extra, message", [
    (["--data", "/no/such/data.npz"], "no such dataset file"),
    (["--nproc", "0"], "--nproc must be >= 1"),
    (["--flash-margin", "1.5"], "--flash-margin must be in [0, 1)"),
    (["--widths", "0,1"], "width multipliers"),
    (["--target", "nope"], "unknown target"),
])
def test_search_errors_are_one_line(extra: list[str], message: str, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    data = _toy(tmp_path / "toy.npz", 50)
    code = main(["search", "--data", str(data), *ARGS, "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err.strip()
    assert code != 0 and message in err and len(err.splitlines()) == 1 and err.startswith("mcc-nas: error:")


@pytest.mark.skipif(importlib.util.find_spec("ray") is not None, reason="Ray is installed")
def test_executor_ray_without_ray_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _toy(tmp_path / "toy.npz", 50)
    code = main(["search", "--data", str(data), *ARGS, "--executor", "ray", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "needs Ray, which is not installed" in err


def test_existing_directory_needs_resume_and_the_same_settings(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from nas.search import SearchConfig

    data = _toy(tmp_path / "toy.npz", 50)
    out = tmp_path / "o"
    out.mkdir()
    cfg = SearchConfig(str(data), "cortex-m4", 1, 1, None, 1, None, "tiny", (16,), (0.25,), 0, 5e-3)
    (out / "config.json").write_text(cfg.to_json())
    assert main(["search", "--data", str(data), *ARGS, "--out", str(out)]) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert main(["search", "--data", str(data), *ARGS, "--out", str(out), "--resume"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_missing_torch_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # "import torch" now raises ImportError
    code = main(["search", "--data", str(_toy(tmp_path / "t.npz", 50)), *ARGS, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "needs PyTorch" in err


def test_help_lists_search(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    out = capsys.readouterr().out
    assert "--budget" in out and "--executor" in out and "--resume" in out


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed (optional; not in CI)")
def test_search_with_the_ray_executor_equals_local(tmp_path: Path) -> None:
    """The evolution's fitness evaluations as Ray tasks (a local Ray started by the executor) give the same search
    as in this process: fitness is deterministic, only where it runs differs."""
    import ray

    data = _toy(tmp_path / "toy.npz")
    common = ["search", "--data", str(data), *ARGS, "--sram", "20000", "--flash", "80000", "--no-baseline"]
    try:
        assert main([*common, "--executor", "ray", "--out", str(tmp_path / "ray")]) == 0
    finally:
        ray.shutdown()
    assert main([*common, "--out", str(tmp_path / "local")]) == 0
    a, b = (json.loads((tmp_path / d / "evolution.json").read_text()) for d in ("ray", "local"))
    assert a["fitness"] == b["fitness"] and a["fitness"]
