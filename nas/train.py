"""Training and evaluation: the supernet (SPOS, optionally under DDP), standalone networks, BN recalibration.

One recipe for everything that is compared: AdamW with a one-cycle learning-rate schedule and cross-entropy, the
same batch size and epochs (:class:`Recipe`); the supernet uses SGD with Nesterov momentum (see ``optimizer``).
Images are NCHW float32 in [0, 1] already at the network's resolution.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compiler.errors import MccError
from nas.space import Arch
from nas.supernet import SuperNet, path_rng, torch


@dataclass(frozen=True)
class Recipe:
    """How a network is trained: epochs, global batch size, peak learning rate, weight decay, seed."""

    epochs: int
    batch_size: int = 128
    lr: float = 5e-3
    weight_decay: float = 1e-4
    seed: int = 0
    max_steps: int = 0
    """Stop after this many steps per epoch (0: every full batch of the epoch; for tests)."""
    optimizer: str = "adamw"
    """``adamw`` (standalone networks) or ``sgd`` (Nesterov momentum 0.9; the supernet, as SPOS and OFA train
    it: Adam's per-parameter normalisation turns the floating-point noise on gradients that are zero in exact
    arithmetic, such as a bias followed by BatchNorm, into full-size steps, so runs that differ only in
    summation order, like 1 and 2 DDP processes, drift apart)."""

    def steps_per_epoch(self, n: int) -> int:
        """Full global batches per epoch (the last partial batch is dropped, so DDP ranks stay equal)."""
        steps = n // self.batch_size
        if steps < 1:
            raise MccError(f"{n} training images are fewer than one batch of {self.batch_size}")
        return min(steps, self.max_steps) if self.max_steps else steps


def _dist() -> tuple[int, int]:
    d = torch.distributed
    if d.is_available() and d.is_initialized():
        return d.get_rank(), d.get_world_size()
    return 0, 1


def _optimizer(model: Any, recipe: Recipe, total_steps: int) -> tuple[Any, Any]:
    if recipe.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=0.9, nesterov=True,
                              weight_decay=recipe.weight_decay)
    elif recipe.optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    else:
        raise MccError(f"unknown optimizer {recipe.optimizer!r}: adamw or sgd")
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=max(2, total_steps))
    return opt, sched


def train_supernet(net: SuperNet, x: np.ndarray, y: np.ndarray, recipe: Recipe, *, checkpoint: Path | None = None,
                   log: Callable[[str], None] | None = None) -> list[float]:
    """Train ``net`` with uniform single-path sampling; returns the global mean loss of every step.

    Under ``torch.distributed`` every rank takes its contiguous share of each global batch and all ranks run the
    same path (seeded by step), gradients are averaged by DDP and BatchNorm statistics are global, so the run equals
    one process's up to floating-point summation order. With ``checkpoint``, the weights, optimiser, schedule and
    losses are saved after every epoch (by rank 0) and a run resumes from the last completed epoch.
    """
    rank, world = _dist()
    if recipe.batch_size % world:
        raise MccError(f"the batch size {recipe.batch_size} must be a multiple of the {world} processes")
    steps = recipe.steps_per_epoch(len(x))
    torch.manual_seed(recipe.seed)
    model: Any = net
    if world > 1:
        with warnings.catch_warnings():  # broadcast_buffers=False is what we want: BN statistics are global already
            warnings.simplefilter("ignore", FutureWarning)
            model = torch.nn.parallel.DistributedDataParallel(net, find_unused_parameters=True,
                                                              broadcast_buffers=False)
    opt, sched = _optimizer(net, recipe, recipe.epochs * steps)
    losses: list[float] = []
    start_epoch = 0
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=False)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        losses, start_epoch = state["losses"], state["epoch"]
        if log and start_epoch:
            log(f"resumed the supernet after epoch {start_epoch}/{recipe.epochs}")
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    local = recipe.batch_size // world
    for epoch in range(start_epoch, recipe.epochs):
        net.train()
        perm = torch.randperm(len(xt), generator=torch.Generator().manual_seed(recipe.seed * 1000 + epoch))
        t0, total = time.time(), 0.0
        for step in range(steps):
            arch = net.space.sample(path_rng(recipe.seed, epoch, step))
            idx = perm[step * recipe.batch_size + rank * local: step * recipe.batch_size + (rank + 1) * local]
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(xt[idx], arch), yt[idx])
            loss.backward()
            active = net.active_parameters(arch)
            for p in net.parameters():
                if id(p) not in active:
                    p.grad = None
            opt.step()
            sched.step()
            value = loss.detach().clone()
            if world > 1:
                torch.distributed.all_reduce(value)
                value /= world
            losses.append(float(value))
            total += losses[-1]
            if log and (step + 1) % max(1, steps // 4) == 0:
                log(f"supernet epoch {epoch + 1}/{recipe.epochs} step {step + 1}/{steps}: loss {total / (step + 1):.4f}"
                    f" ({time.time() - t0:.0f} s)")
        if checkpoint is not None and rank == 0:
            tmp = checkpoint.with_suffix(".tmp")
            torch.save({"model": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "losses": losses, "epoch": epoch + 1, "recipe": asdict(recipe)}, tmp)
            tmp.replace(checkpoint)
    return losses


def train_module(model: Any, x: np.ndarray, y: np.ndarray, recipe: Recipe,
                 log: Callable[[str], None] | None = None, what: str = "network") -> list[float]:
    """Train a standalone network with :class:`Recipe`; returns the mean loss of every epoch."""
    steps = recipe.steps_per_epoch(len(x))
    torch.manual_seed(recipe.seed)
    opt, sched = _optimizer(model, recipe, recipe.epochs * steps)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    out = []
    for epoch in range(recipe.epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=torch.Generator().manual_seed(recipe.seed * 1000 + epoch))
        t0, total = time.time(), 0.0
        for step in range(steps):
            idx = perm[step * recipe.batch_size:(step + 1) * recipe.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        out.append(total / steps)
        if log:
            log(f"{what} epoch {epoch + 1}/{recipe.epochs}: loss {out[-1]:.4f} ({time.time() - t0:.0f} s)")
    model.eval()
    return out


@torch.no_grad()  # type: ignore[untyped-decorator]
def recalibrate_bn(model: Any, x: np.ndarray, batch_size: int = 256) -> None:
    """Re-estimate every BatchNorm's running statistics as the plain average over ``x`` (SPOS/OFA do this before
    evaluating a subnet whose weights were shared)."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    for i in range(0, len(x), batch_size):
        model(torch.from_numpy(x[i:i + batch_size]))
    for bn in bns:
        bn.momentum = 0.1
    model.eval()


@torch.no_grad()  # type: ignore[untyped-decorator]
def predict(model: Any, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Float logits of ``model`` (eval mode) on ``x``."""
    model.eval()
    return np.concatenate([model(torch.from_numpy(x[i:i + batch_size])).numpy()
                           for i in range(0, len(x), batch_size)])


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of ``logits`` (any leading shape ``[N, ..., classes]``)."""
    return float(np.mean(logits.reshape(len(y), -1).argmax(1) == y))


def subnet_accuracy(net: SuperNet, arch: Arch, x_cal: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> float:
    """The search's fitness: ``arch`` extracted from the supernet, BatchNorm recalibrated on ``x_cal``, top-1
    accuracy on the validation images."""
    sub = net.extract(arch)
    recalibrate_bn(sub, x_cal)
    return accuracy(predict(sub, x_val), y_val)


def save_losses(path: Path, losses: list[float]) -> None:
    """Write a loss curve as JSON."""
    path.write_text(json.dumps(losses))
