"""The supernet: weight sharing against the standalone module, training checkpoints, DDP against one process."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nas.space import small_space  # noqa: E402
from nas.supernet import SuperNet, supernet_space  # noqa: E402
from nas.train import Recipe, recalibrate_bn, train_supernet  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SPACE = supernet_space(replace(small_space(), hswish=(False, True)).at(16, 0.25))


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _data(n: int = 256, size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = rng.random((n, 1, size, size), dtype=np.float32) * 0.5
    x[np.arange(n), 0, y, :] += 0.5
    return x, y


def test_subnet_outputs_equal_the_extracted_standalone_module() -> None:
    torch.manual_seed(0)
    net = SuperNet(SPACE)
    x, y = _data()
    train_supernet(net, x, y, Recipe(1, 64, max_steps=3))  # trained weights and BN statistics, not the init
    xx = torch.from_numpy(x[:16])
    rng = random.Random(3)
    archs = [SPACE.sample(rng) for _ in range(6)] + [SPACE.largest()]
    for arch in archs:
        net.eval()
        sub = net.extract(arch).eval()
        with torch.no_grad():
            a, b = net(xx, arch), sub(xx)
        # the same float operations on the same (sliced) tensors
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5), arch.describe()
        # training mode too (batch statistics), and the extracted copy does not alias the supernet's weights
        net.train()
        sub.train()
        with torch.no_grad():
            assert torch.allclose(net(xx, arch), sub(xx), atol=1e-4, rtol=1e-4), arch.describe()
        before = [p.detach().clone() for p in net.parameters()]
        with torch.no_grad():
            for p in sub.parameters():
                p.add_(1.0)
        assert all(torch.equal(p, q) for p, q in zip(before, net.parameters(), strict=True))
    # a different path really computes something else (the check can fail)
    net.eval()
    with torch.no_grad():
        assert not torch.allclose(net(xx, archs[0]), net(xx, archs[1]))


def test_kernel_and_channel_slices_are_shared() -> None:
    net = SuperNet(SPACE)
    arch = SPACE.sample(random.Random(1))
    sub = net.extract(arch)
    blk = list(arch.blocks())[1]
    dw = sub.blocks[1].body[1][0].weight
    o = (7 - blk.kernel) // 2
    assert torch.equal(dw, net.stages[0][0].dw_w[:blk.mid, :, o:o + blk.kernel, o:o + blk.kernel])
    assert dw.shape == (blk.mid, 1, blk.kernel, blk.kernel)


def test_extract_rejects_a_foreign_arch() -> None:
    from compiler.errors import MccError

    net = SuperNet(SPACE)
    with pytest.raises(MccError, match="not a subnet"):
        net.extract(small_space().at(16, 0.25).sample(random.Random(0)))


def test_supernet_checkpoint_resume_equals_uninterrupted(tmp_path: Path) -> None:
    x, y = _data(192)
    recipe = Recipe(2, 64, seed=4)
    torch.manual_seed(0)
    whole = SuperNet(SPACE)
    losses = train_supernet(whole, x, y, recipe)
    ckpt = tmp_path / "s.pt"

    class KilledError(Exception):
        pass

    def kill_in_epoch_2(msg: str) -> None:
        if ckpt.is_file():
            raise KilledError

    torch.manual_seed(0)
    with pytest.raises(KilledError):
        train_supernet(SuperNet(SPACE), x, y, recipe, checkpoint=ckpt, log=kill_in_epoch_2)
    assert torch.load(ckpt, weights_only=False)["epoch"] == 1
    torch.manual_seed(123)  # a different initialisation: everything must come from the checkpoint
    resumed = SuperNet(SPACE)
    got = train_supernet(resumed, x, y, recipe, checkpoint=ckpt)
    assert got == losses and len(got) == 6
    for p, q in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(p, q)


def test_recalibrated_bn_is_the_plain_average() -> None:
    net = SuperNet(SPACE)
    arch = SPACE.sample(random.Random(2))
    sub = net.extract(arch)
    x, _ = _data(64)
    recalibrate_bn(sub, x, batch_size=64)
    bn = sub.stem[1]
    with torch.no_grad():
        h = sub.stem[0](torch.from_numpy(x))
    assert torch.allclose(bn.running_mean, h.mean((0, 2, 3)), atol=1e-5)


def _search_dir(tmp: Path) -> Path:
    """A search directory for ``mcc-nas train-supernet`` on a synthetic .npz (budget tiny: 512 images, batch 64)."""
    from nas.search import SearchConfig, _space_to_json

    tmp.mkdir(parents=True, exist_ok=True)
    x, y = _data(700, 16, seed=1)
    npz = tmp / "toy.npz"
    np.savez(npz, x_train=x, y_train=y, x_test=x[:50], y_test=y[:50])
    out = tmp / "run"
    out.mkdir()
    cfg = SearchConfig(str(npz), "cortex-m4", 65536, 262144, None, 1, None, "tiny", (16,), (0.25,), 0, 5e-3)
    (out / "config.json").write_text(cfg.to_json())
    (out / "supernet_space.json").write_text(_space_to_json(SPACE))
    return out


def _torchrun(out: Path, nproc: int) -> list[float]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "nas.cli", "train-supernet", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return list(torch.load(out / "supernet.pt", weights_only=False)["losses"])


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
def test_ddp_two_processes_match_one(tmp_path: Path) -> None:
    """Same global batch (64), seeds and paths: 2 gloo processes (32 images each, DDP-averaged gradients, global
    BatchNorm statistics) must follow the 1-process loss curve.

    Tolerance. The runs differ only in floating-point summation order (the all-reduce adds two partial sums), about
    1e-7 of a loss of ~2.3. Training amplifies such noise: measured on this tiny network over 8 SGD steps (lr
    0.005), the gap stays 0 for 4 steps and then grows about 10x per step to ~1.2e-4 (at lr 0.05 it reaches 2e-2).
    So: the first 4 steps must agree within 1e-5, and every step within 1e-3 (0.04 % of the loss). A missing
    gradient average (each rank stepping on its half batch) or per-rank BatchNorm statistics change the loss by
    ~1e-2 from the first steps on (per-rank statistics: 1.5e-3 at step 1, measured), so both checks can fail."""
    one = _torchrun(_search_dir(tmp_path / "a"), 1)
    two = _torchrun(_search_dir(tmp_path / "b"), 2)
    assert len(one) == len(two) == 8
    diffs = [abs(p - q) for p, q in zip(one, two, strict=True)]
    assert max(diffs[:4]) < 1e-5, (one, two)
    assert max(diffs) < 1e-3, (one, two)
    assert one[0] != one[-1]  # it trained
