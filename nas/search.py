"""``mcc-nas search``: the whole TinyNAS pipeline, resumable, in one output directory.

1. data (Fashion-MNIST, ``.npz`` or an image folder), resized to the search resolution;
2. stage 1 (:mod:`nas.space_opt`) picks (r, w) unless given;
3. the supernet (:mod:`nas.supernet`) is trained with SPOS, in this process or under ``torchrun`` with N processes;
4. evolution (:mod:`nas.evolution`): mcc's cost as the hard constraint, the supernet's validation accuracy as
   fitness, candidates evaluated by an :mod:`nas.executor`;
5. the winner is trained from scratch with the recipe, exported, compiled with ``mcc -O3`` and run as int8 C on
   the test set; so is MobileNetV2 scaled to the same budget (:mod:`nas.baseline`), with the same recipe;
6. ``report.md``/``report.json`` (the table) and ``pareto.png`` (accuracy vs peak SRAM).

Every step writes its result into the directory; ``--resume`` skips finished steps and continues the supernet
after its last epoch and the evolution after its last generation (the same result as an uninterrupted run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from compiler.errors import MccError
from compiler.pipelines import PatchOptions
from nas.cost import Cost, cost_many
from nas.data import Dataset, load_dataset, resize
from nas.evolution import Constraint, EvolutionConfig, EvolutionState, evolve
from nas.space import Arch, Space, small_space


@dataclass(frozen=True)
class Budget:
    """How much work each step does: images used, supernet epochs, evolution size, final training epochs."""

    train_images: int | None
    val_images: int
    cal_images: int
    supernet_epochs: int
    population: int
    parents: int
    generations: int
    epochs: int
    stage1_samples: int
    batch_size: int = 128
    supernet_lr: float = 0.05
    """Peak learning rate of the supernet's SGD (one-cycle schedule)."""


BUDGETS = {
    "tiny": Budget(train_images=512, val_images=128, cal_images=64, supernet_epochs=1, population=4, parents=2,
                   generations=1, epochs=1, stage1_samples=1, batch_size=64, supernet_lr=0.005),
    "quick": Budget(train_images=1536, val_images=500, cal_images=128, supernet_epochs=2, population=6, parents=2,
                    generations=1, epochs=2, stage1_samples=1),
    "full": Budget(train_images=6000, val_images=500, cal_images=256, supernet_epochs=2, population=8,
                   parents=3, generations=2, epochs=2, stage1_samples=3),
}


BN_RECAL_IMAGES = 2048
"""Training images the final networks' BatchNorm statistics are re-estimated on after training."""


@dataclass(frozen=True)
class SearchConfig:
    """Everything that determines a search's result (stored as ``config.json``; ``--resume`` checks it)."""

    dataset: str
    target: str
    sram: int
    flash: int
    latency: float | None
    opt_level: int
    patches: int | None
    budget: str
    resolutions: tuple[int, ...]
    widths: tuple[float, ...]
    seed: int
    lr: float
    image_size: int | None = None
    grayscale: bool = False
    baseline: bool = True
    flash_margin: float = 0.15
    """Share of the flash budget kept free during the search: ``cost(arch)`` builds the IR with made-up
    quantization scales, so it shares more requantization tables than the trained, calibrated network will (the
    compiled flash came out up to ~20 % higher on small subnets); SRAM and MACs are exact."""

    def to_json(self) -> str:
        """As JSON."""
        return json.dumps(asdict(self), indent=2)

    @staticmethod
    def from_json(text: str) -> SearchConfig:
        """Read :meth:`to_json`'s output."""
        d = json.loads(text)
        d["resolutions"], d["widths"] = tuple(d["resolutions"]), tuple(d["widths"])
        return SearchConfig(**d)

    @property
    def constraint(self) -> Constraint:
        """The hard budgets the search applies to ``cost(arch)`` (flash less the margin)."""
        return Constraint(self.sram, int(self.flash * (1 - self.flash_margin)), self.latency)

    @property
    def patch(self) -> PatchOptions | None:
        """mcc's patch options for costing and compiling."""
        return PatchOptions(patches=self.patches) if self.patches is not None else None


class Progress:
    """A progress bar on stderr (redrawn in place on a terminal, a line per quarter otherwise)."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label, self.done, self.t0 = max(1, total), label, 0, time.time()
        self.tty = sys.stderr.isatty()
        self._last_quarter = -1

    def update(self, n: int = 1, note: str = "") -> None:
        """Advance by ``n``."""
        self.done += n
        frac = min(1.0, self.done / self.total)
        bar = "#" * int(24 * frac) + "." * (24 - int(24 * frac))
        line = f"{self.label} [{bar}] {self.done}/{self.total} {time.time() - self.t0:.0f}s {note}"
        if self.tty:
            print("\r" + line, end="\n" if self.done >= self.total else "", file=sys.stderr, flush=True)
        elif int(4 * frac) != self._last_quarter:
            self._last_quarter = int(4 * frac)
            print(line, file=sys.stderr, flush=True)


def search_space(cfg: SearchConfig, data: Dataset) -> Space:
    """The small skeleton for the data's channels and classes, with the supernet's choices (no SE, ReLU6)."""
    return replace(small_space(data.in_channels, data.num_classes), se=(False,), hswish=(False,),
                   resolutions=cfg.resolutions, width_mults=cfg.widths)


class CostCache:
    """:func:`nas.cost.cost_many` with results kept per architecture (JSON) on disk."""

    def __init__(self, cfg: SearchConfig, path: Path | None, jobs: int = 1) -> None:
        self.cfg, self.path, self.jobs = cfg, path, jobs
        self.table: dict[str, dict[str, Any]] = {}
        if path is not None and path.is_file():
            self.table = json.loads(path.read_text())

    def __call__(self, archs: Sequence[Arch]) -> list[Cost]:
        """The costs of ``archs``, in order."""
        keys = [a.to_json() for a in archs]
        todo = [k for k in dict.fromkeys(keys) if k not in self.table]
        if todo:
            got = cost_many([Arch.from_json(k) for k in todo], self.cfg.target, self.cfg.opt_level, self.cfg.patch,
                            jobs=self.jobs)
            for k, c in zip(todo, got, strict=True):
                self.table[k] = {f: getattr(c, f) for f in ("peak_sram_bytes", "flash_bytes", "macs",
                                                            "latency_instructions")}
            if self.path is not None:
                self.path.write_text(json.dumps(self.table))
        return [Cost(**self.table[k]) for k in keys]


# -- the fitness function, runnable in any process (the executor's workers load the context from disk) ------------
_CONTEXT: dict[str, Any] = {}


def _fitness_job(job: tuple[str, str]) -> float:
    out, arch_json = job
    if _CONTEXT.get("out") != out:
        from nas.supernet import SuperNet, torch

        torch.set_num_threads(1)
        d = Path(out)
        space = _space_from_json((d / "supernet_space.json").read_text())
        net = SuperNet(space)
        net.load_state_dict(torch.load(d / "supernet.pt", weights_only=False)["model"])
        with np.load(d / "fitness_data.npz") as f:
            _CONTEXT.update(out=out, net=net, x_cal=f["x_cal"], x_val=f["x_val"], y_val=f["y_val"])
    from nas.train import subnet_accuracy

    return subnet_accuracy(_CONTEXT["net"], Arch.from_json(arch_json), _CONTEXT["x_cal"], _CONTEXT["x_val"],
                           _CONTEXT["y_val"])


def _space_to_json(space: Space) -> str:
    d = asdict(space)
    d.pop("extra", None)
    return json.dumps(d)


def _space_from_json(text: str) -> Space:
    from nas.space import StageSpec

    d = json.loads(text)
    d["stages"] = tuple(StageSpec(**s) for s in d["stages"])
    for k in ("resolutions", "width_mults", "kernels", "expands", "depths", "se", "hswish"):
        d[k] = tuple(d[k])
    return Space(**d)


def load_config_data(out: Path) -> tuple[SearchConfig, Dataset, Budget]:
    """The configuration in ``out`` and its data at the budget's sizes."""
    cfg = SearchConfig.from_json((out / "config.json").read_text())
    b = BUDGETS[cfg.budget]
    data = load_dataset(cfg.dataset, image_size=cfg.image_size, grayscale=cfg.grayscale, seed=cfg.seed)
    return cfg, data.subset(b.train_images, b.val_images), b


def train_supernet_here(out: Path, log: Callable[[str], None]) -> list[float]:
    """Step 3 in this process or as one ``torchrun`` worker (``torch.distributed`` initialised from the
    environment when ``WORLD_SIZE`` is set): train the supernet of ``out/supernet_space.json``."""
    from nas.supernet import SuperNet, torch
    from nas.train import Recipe, train_supernet

    cfg, data, b = load_config_data(out)
    space = _space_from_json((out / "supernet_space.json").read_text())
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        torch.distributed.init_process_group("gloo")
    try:
        torch.manual_seed(cfg.seed)
        net = SuperNet(space)
        x = resize(data.x_train, space.resolutions[0])
        recipe = Recipe(b.supernet_epochs, b.batch_size, b.supernet_lr, 4e-5, seed=cfg.seed, optimizer="sgd")
        rank = torch.distributed.get_rank() if distributed else 0
        losses = train_supernet(net, x, data.y_train, recipe, checkpoint=out / "supernet.pt",
                                log=log if rank == 0 else None)
    finally:
        if distributed:
            torch.distributed.destroy_process_group()
    return losses


def run_torchrun(out: Path, nproc: int) -> None:
    """Step 3 under ``torchrun --nproc-per-node nproc`` (gloo on CPU)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "nas.cli", "train-supernet", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    if subprocess.run(cmd, env=env).returncode != 0:
        raise MccError(f"the supernet training under torchrun failed ({' '.join(cmd[2:])})")


def _pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not dominated (lower SRAM and higher accuracy), sorted by SRAM."""
    front: list[tuple[float, float]] = []
    for s, a in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or a > front[-1][1]:
            front.append((s, a))
    return front


def plot_pareto(state: EvolutionState, cfg: SearchConfig, path: Path, winner: str) -> None:
    """Supernet accuracy against peak SRAM of every evaluated candidate, the Pareto front and the winner."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MccError("the Pareto plot needs matplotlib, which is not installed (pip install matplotlib)") from None
    pts = [(state.costs[k]["peak_sram_bytes"] / 1024, 100 * f) for k, f in state.fitness.items()]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=14, alpha=0.6, label="evaluated subnets")
    front = _pareto(pts)
    ax.plot([p[0] for p in front], [p[1] for p in front], "r-", linewidth=1.2, label="Pareto front")
    w = state.costs[winner]
    ax.scatter([w["peak_sram_bytes"] / 1024], [100 * state.fitness[winner]], marker="*", s=160, c="k",
               label="chosen", zorder=3)
    ax.axvline(cfg.sram / 1024, color="gray", linestyle="--", linewidth=1, label="SRAM budget")
    ax.set_xlabel("peak SRAM (KB, mcc plan)")
    ax.set_ylabel("supernet validation accuracy (%)")
    ax.set_title(f"TinyNAS on {cfg.target}: SRAM {cfg.sram // 1024} KB, flash {cfg.flash // 1024} KB", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    try:
        fig.savefig(path)
    except OSError as e:
        raise MccError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        plt.close(fig)


def format_table(rows: list[tuple[str, str, dict[str, Any]]], sram: int, flash: int) -> str:
    """The comparison as a Markdown table (figures from each compiled project's ``report.json``)."""
    lines = ["| model | architecture | float acc. | int8 C acc. | peak SRAM | flash | MACs | fits |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for name, desc, r in rows:
        fits = "yes" if r["peak_sram_bytes"] <= sram and r["flash_bytes"] <= flash else "NO"
        lines.append(f"| {name} | {desc.replace('|', '/')} | {100 * r['float_accuracy']:.2f}% | "
                     f"{100 * r['int8_accuracy']:.2f}% | {r['peak_sram_bytes']:,} B | {r['flash_bytes']:,} B | "
                     f"{r['macs']:,} | {fits} |")
    return "\n".join(lines) + "\n"


def run_search(cfg: SearchConfig, out: Path, *, resume: bool = False, nproc: int = 1, executor: str = "local",
               jobs: int = 1, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole pipeline; returns the report (also written to ``out/report.json`` and ``out/report.md``)."""
    from nas.executor import make_executor

    t_start = time.time()
    ex = make_executor(executor, jobs)  # fail early on a missing Ray
    out.mkdir(parents=True, exist_ok=True)
    cfg_file = out / "config.json"
    if cfg_file.is_file():
        if not resume:
            raise MccError(f"{out} already holds a search; pass --resume to continue it or choose another --out")
        if SearchConfig.from_json(cfg_file.read_text()) != cfg:
            raise MccError(f"{out} holds a search with other settings ({cfg_file}); --resume needs the same ones")
    else:
        cfg_file.write_text(cfg.to_json())
    from nas.supernet import torch

    b = BUDGETS[cfg.budget]
    data = load_dataset(cfg.dataset, image_size=cfg.image_size, grayscale=cfg.grayscale, seed=cfg.seed)
    log(data.summary())
    data = data.subset(b.train_images, b.val_images)
    log(f"budget {cfg.budget}: {len(data.x_train):,} training and {len(data.x_val):,} validation images, "
        f"{len(data.x_test):,} test images; search constraint {cfg.constraint.describe()} (flash less the "
        f"{100 * cfg.flash_margin:g} % margin) on {cfg.target}, mcc -O{cfg.opt_level}")
    costs = CostCache(cfg, out / "costs.json", jobs)
    base_space = search_space(cfg, data)

    # 2. stage 1
    stage1 = out / "stage1.json"
    if not stage1.is_file():
        if len(cfg.resolutions) * len(cfg.widths) == 1:
            r, w = cfg.resolutions[0], cfg.widths[0]
        else:
            from nas.space_opt import optimise_space

            log(f"stage 1: {len(cfg.resolutions) * len(cfg.widths)} (r, w) spaces x {b.stage1_samples} samples")
            res = optimise_space(base_space, cfg.resolutions, cfg.widths, sram=cfg.sram, flash=cfg.flash,
                                 samples=b.stage1_samples, target=cfg.target, opt_level=cfg.opt_level,
                                 patch=cfg.patch, seed=cfg.seed, jobs=jobs)
            if res.best is None:
                raise MccError(f"no subnet of any (r, w) space fits {cfg.constraint.describe()}")
            r, w = res.best.resolution, res.best.width_mult
        stage1.write_text(json.dumps({"resolution": r, "width_mult": w}))
    s1 = json.loads(stage1.read_text())
    space = base_space.at(s1["resolution"], s1["width_mult"])
    log(f"search space: r={s1['resolution']} w={s1['width_mult']:g}, kernels {space.kernels}, expansions "
        f"{space.expands}, depths {space.depths}")
    (out / "supernet_space.json").write_text(_space_to_json(space))
    res_ = space.resolutions[0]

    # 3. supernet
    done3 = out / "supernet_done.json"
    if not done3.is_file():
        t0 = time.time()
        log(f"supernet: {b.supernet_epochs} epochs, SPOS, {nproc} process(es)")
        if nproc > 1:
            run_torchrun(out, nproc)
        else:
            train_supernet_here(out, log)
        done3.write_text(json.dumps({"seconds": time.time() - t0, "processes": nproc}))
    rng = np.random.default_rng(cfg.seed)
    cal_idx = rng.choice(len(data.x_train), min(b.cal_images, len(data.x_train)), replace=False)
    x_cal = resize(data.x_train[cal_idx], res_)
    np.savez(out / "fitness_data.npz", x_cal=x_cal, x_val=resize(data.x_val, res_), y_val=data.y_val)

    # 4. evolution
    evo_file = out / "evolution.json"
    state = EvolutionState.from_json(evo_file.read_text()) if evo_file.is_file() else None
    ecfg = EvolutionConfig(b.population, b.generations, b.parents, seed=cfg.seed)
    if state is None or state.generation <= ecfg.generations:
        bar = Progress(ecfg.generations + 1, "evolution")
        if state is not None:
            bar.update(state.generation)

        def fitness(archs: Sequence[Arch]) -> list[float]:
            return ex.map(_fitness_job, [(str(out), a.to_json()) for a in archs])

        def saved(st: EvolutionState) -> None:
            evo_file.write_text(st.to_json())
            bar.update(1, f"best {100 * st.best_per_generation[-1]:.2f}%")

        state = evolve(space, cfg.constraint, costs, fitness, ecfg, state, saved)
    ex.close()
    arch, fit, wcost = state.best()
    log(f"winner: {arch.describe()} (supernet accuracy {100 * fit:.2f}%, peak SRAM {wcost.peak_sram_bytes:,} B, "
        f"flash {wcost.flash_bytes:,} B, {wcost.macs:,} MACs)")
    (out / "winner.json").write_text(arch.to_json())

    # 5. winner and baseline, same recipe
    from nas.torch_model import to_module
    from nas.train import Recipe, predict, recalibrate_bn, train_module

    recipe = Recipe(b.epochs, b.batch_size, cfg.lr, seed=cfg.seed)

    def finish(name: str, a: Arch) -> dict[str, Any]:
        res_file = out / name / "result.json"
        if res_file.is_file():
            return dict(json.loads(res_file.read_text()))
        from nas.deploy import deploy
        from nas.train import accuracy

        torch.manual_seed(cfg.seed)
        model = to_module(a)
        x_tr = resize(data.x_train, a.resolution)
        t0 = time.time()
        train_module(model, x_tr, data.y_train, recipe, log, name)
        # BatchNorm statistics as the plain average over training images: a short schedule leaves the running
        # averages (momentum 0.1) behind the weights; same for both networks
        recalibrate_bn(model, x_tr[:BN_RECAL_IMAGES])
        x_te = resize(data.x_test, a.resolution)
        fl = accuracy(predict(model, x_te), data.y_test)
        patches = f" --patches {cfg.patches}" if cfg.patches is not None else ""
        log(f"{name}: trained in {time.time() - t0:.0f} s, float test accuracy {100 * fl:.2f}%; compiling with "
            f"mcc -O{cfg.opt_level}{patches} --target {cfg.target} and running the int8 C on {len(x_te):,} test images")
        d = deploy(model, a, x_tr[cal_idx], x_te, data.y_test, out / name, target=cfg.target,
                   opt_level=cfg.opt_level, patch=cfg.patch, float_accuracy=fl)
        return d.to_dict()

    rows = [("TinyNAS (mcc-nas search)", arch.describe(), finish("winner", arch))]
    baseline_info: dict[str, Any] = {}
    if cfg.baseline:
        from nas.baseline import scale_to_fit

        bfile = out / "baseline.json"
        if not bfile.is_file():
            log("baseline: scaling MobileNetV2 (width, resolution) to the same budgets with the cost model")
            sb = scale_to_fit(data.in_channels, data.num_classes, cfg.constraint, costs)
            bfile.write_text(json.dumps({"arch": sb.arch.to_dict(), "tried": [
                {"resolution": r, "width_mult": w, "peak_sram_bytes": c.peak_sram_bytes, "flash_bytes": c.flash_bytes,
                 "macs": c.macs, "fits": ok} for r, w, c, ok in sb.tried]}, indent=1))
        baseline_info = json.loads(bfile.read_text())
        barch = Arch.from_dict(baseline_info["arch"])
        rows.append((f"MobileNetV2 r={barch.resolution} w={barch.width_mult:g}", "k3e6, depths 2,3,4,3,3,1",
                     finish("baseline", barch)))

    # 6. report
    table = format_table(rows, cfg.sram, cfg.flash)
    budgets = (f"SRAM {cfg.sram:,} B, flash {cfg.flash:,} B (the search kept {100 * cfg.flash_margin:g} % of the "
               f"flash free)" + (f", latency {cfg.latency:,.0f} instructions" if cfg.latency is not None else ""))
    gap = 100 * (rows[0][2]["int8_accuracy"] - rows[1][2]["int8_accuracy"]) if len(rows) > 1 else None
    plot_pareto(state, cfg, out / "pareto.png", arch.to_json())
    report = {"config": asdict(cfg), "winner": arch.to_dict(), "supernet_accuracy": fit,
              "rows": [{"model": n, "architecture": d, **r} for n, d, r in rows],
              "int8_gap_points": gap, "evaluated": len(state.fitness), "costed": len(state.costs),
              "best_per_generation": state.best_per_generation, "seconds_this_run": time.time() - t_start}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    md = (f"# mcc-nas search\n\n{budgets} on {cfg.target}, mcc -O{cfg.opt_level}, budget "
          f"{cfg.budget}, dataset {cfg.dataset}.\n\n{table}")
    if gap is not None:
        md += f"\nTinyNAS int8 accuracy minus the baseline's: {gap:+.2f} points.\n"
    (out / "report.md").write_text(md)
    log("\n" + table + (f"TinyNAS - baseline (int8): {gap:+.2f} points\n" if gap is not None else "")
        + f"wrote {out / 'report.md'}, {out / 'report.json'}, {out / 'pareto.png'}")
    return report
