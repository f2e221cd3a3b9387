"""``mcc run DIR --emulate T`` and ``mcc bench MODEL``: run generated C on an emulated Cortex-M and measure it.

Both build the project with arm-none-eabi-gcc and the harness of ``runtime_c/cortexm/``, run it in QEMU
(:mod:`backends.cortexm.emulate`), check its outputs against the host build and print instructions (total, per
MAC, per layer), flash, SRAM and stack. See docs/cortexm.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from compiler.analyze_cmd import _short as short_name
from compiler.errors import MccError
from compiler.pipelines import PatchOptions, add_patch_arguments, patch_options

EMULATED = ("cortex-m7", "cortex-m4", "stm32h743")


def _fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[c]) for r in [head, *rows]) for c in range(len(head))]

    def line(row: Sequence[str]) -> str:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        return "  ".join(cells).rstrip()

    return [line(head), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def format_summary(res: Any) -> list[str]:
    """The closing lines both commands print: instructions, footprint and stack."""
    fp = res.footprint
    how = "exact, QEMU TCG plugin" if res.counting == "plugin" else "SysTick, ±40 per segment"
    runs = res.run_instructions
    spread = f" (min {min(runs):,}, max {max(runs):,} over {len(runs)} inferences)" if len(set(runs)) > 1 else ""
    copies = res.instructions - res.layer_instructions[0]
    lines = [
        f"instructions per inference  {res.instructions:,} ({how}){spread}",
        f"  in layers                 {res.layer_instructions[0]:,}; input/output copies and call {copies:,}",
        f"instructions per MAC        {_fmt(res.per_mac)} ({res.macs:,} MACs of the model"
        + (f"; {res.executed_macs:,} executed with the recompute of patch-based inference)"
           if res.executed_macs != res.macs else ")"),
        f"flash                       {fp.flash_bytes:,} B of {res.flash_budget:,} (code {fp.text_bytes:,}, "
        f"read-only data {fp.rodata_bytes:,}, .data {fp.data_bytes:,}; harness {fp.harness_flash_bytes:,})",
        f"SRAM                        arena {res.arena_bytes:,} B; static RAM {fp.static_ram_bytes:,} B of "
        f"{res.sram_budget:,} (harness {fp.harness_ram_bytes:,})",
        f"stack                       {res.stack_bytes:,} B measured (painted), {res.stack_bound.bytes:,} B static "
        f"bound ({' > '.join(res.stack_bound.path)}"
        + (f"; excludes {', '.join(res.stack_bound.unknown)}" if res.stack_bound.unknown else "") + ")",
    ]
    lines += [f"note: {n}" for n in res.notes]
    return lines


def format_layers(res: Any) -> list[str]:
    """The per-layer table: layer, op, MACs, instructions, instructions per MAC."""
    rows: list[tuple[str, ...]] = [(str(r.index), short_name(r.name, 32), r.op, f"{r.macs:,}",
             "no code" if r.instructions is None else f"{r.instructions:,}", _fmt(r.per_mac)) for r in res.layers]
    for seg in res.segments:
        if seg.layer is None:
            rows.append(("", f"({seg.label})", "", "", f"{seg.instructions:,}", ""))
    return _table(("#", "layer", "op", "MACs", "instructions", "instr/MAC"), rows, {0, 3, 4, 5})


def host_line(res: Any) -> str:
    """Whether the emulated outputs equal the host build's."""
    if res.host_identical is None:
        return "outputs not compared with the host build"
    return ("outputs bit-identical to the host build" if res.host_identical
            else "OUTPUTS DIFFER from the host build")


def run_emulated(project: Path, input_path: Path, output_path: Path | None, *, target: str, opt: str,
                 as_json: bool, counting: str, timeout: float) -> int:
    """``mcc run DIR --emulate T``: emulate on the given inputs, compare with the host build, print the figures."""
    from backends.cortexm.emulate import emulate, record_in_report
    from compiler.runner import from_c_batches, load_inputs, read_report, save_outputs, to_c_batches

    report = read_report(project)
    arrays = load_inputs(project, input_path)
    batches, mode = to_c_batches(report, arrays)
    res = emulate(project, report, target, opt, batches, counting=counting, timeout=timeout)
    record_in_report(project, res)
    if output_path is not None:
        save_outputs(output_path, from_c_batches(report, res.outputs, mode))
    if as_json:
        print(json.dumps(res.to_json(), indent=2))
    else:
        print(f"mcc: emulated {project} on {res.target} (QEMU {res.board.machine}, arm-none-eabi-gcc {res.opt}): "
              f"{res.samples} inference{'s' if res.samples > 1 else ''}, {host_line(res)}")
        print("\n".join(format_summary(res)))
    if res.host_identical is False:
        raise MccError(f"the outputs of {project} on the emulated {res.target} differ from the host build's")
    return 0


def random_c_batches(report: dict[str, Any], n: int, seed: int) -> list[np.ndarray]:
    """``n`` seeded random samples per input, in the C layout and dtype (the full integer range, or normal floats)."""
    from compiler.ir import DType

    rng = np.random.default_rng(seed)
    batches = []
    for spec in report["inputs"]:
        dt = DType(spec["dtype"])
        shape = (n, *spec["shape"])
        if dt.is_float:
            batches.append(rng.standard_normal(shape).astype(dt.np))
        else:
            batches.append(rng.integers(dt.qmin, dt.qmax + 1, shape).astype(dt.np))
    return batches


def plot_layers(res: Any, title: str, out: Path) -> None:
    """A bar chart of instructions per layer, with instructions per MAC on a second axis."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MccError("--plot needs matplotlib, which is not installed (pip install matplotlib)") from None
    rows = [r for r in res.layers if r.instructions is not None]
    fig, ax = plt.subplots(figsize=(max(7.0, 0.3 * len(rows) + 2), 4.5))
    ax.bar(range(len(rows)), [r.instructions / 1e6 for r in rows], color="tab:blue", label="instructions")
    ax.set_xticks(range(len(rows)), [f"{r.index} {r.op.split('.')[-1]}" for r in rows], rotation=90, fontsize=7)
    ax.set_ylabel("instructions (millions)")
    ax2 = ax.twinx()
    ax2.plot(range(len(rows)), [r.per_mac if r.per_mac is not None else float("nan") for r in rows], "o",
             color="tab:red", markersize=4, label="instructions per MAC")
    ax2.set_ylabel("instructions per MAC", color="tab:red")
    ax2.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    try:
        fig.savefig(out)
    except OSError as e:
        raise MccError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        plt.close(fig)


def _bench_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mcc bench",
        description="Compile a model, run one inference on an emulated Cortex-M (QEMU) and print instructions "
                    "(total, per MAC, per layer), flash, SRAM and stack. The outputs are checked against the host "
                    "build. See docs/cortexm.md.")
    p.add_argument("model", help="model file (.tflite, .onnx or .mir)")
    p.add_argument("--target", default="cortex-m7", help=f"emulated part: {', '.join(EMULATED)} (default cortex-m7)")
    p.add_argument("-O", dest="opt_level", type=int, choices=range(4), default=3, metavar="LEVEL",
                   help="mcc's optimisation level (default 3)")
    p.add_argument("--opt", default="O3", metavar="CLEVEL",
                   help="arm-none-eabi-gcc optimisation: O0, Os, O2 or O3 (default O3)")
    p.add_argument("--calibration", metavar="FILE", help="representative inputs for quantizing a float model")
    p.add_argument("-o", "--output", metavar="DIR", help="keep the generated project here (default: a temporary "
                                                           "directory)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random input (default 0)")
    p.add_argument("--counting", default="auto", choices=("auto", "plugin", "systick"),
                   help="instruction counting: the QEMU plugin (exact), SysTick (±40), or auto (plugin, else SysTick)")
    p.add_argument("--timeout", type=float, default=1800.0, metavar="SECONDS", help="QEMU time limit (default 1800)")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of tables")
    p.add_argument("--plot", metavar="PNG", help="write a bar chart of instructions per layer (needs matplotlib)")
    p.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    add_patch_arguments(p, stream_input=False)
    return p


def bench(model: Path, out_dir: Path, *, target: str, opt_level: int, opt: str, calibration: str | None = None,
          seed: int = 0, counting: str = "auto", timeout: float = 1800.0, patch: PatchOptions | None = None) -> Any:
    """Compile ``model`` into ``out_dir`` for ``target`` and emulate one seeded random inference."""
    from backends.cortexm.boards import c_opt_flag, get_board
    from backends.cortexm.emulate import emulate, record_in_report
    from compiler.driver import compile_model

    get_board(target)
    c_opt_flag(opt)
    report = compile_model(model, out_dir, opt_level=opt_level, target=target, calibration=calibration, patch=patch)
    res = emulate(out_dir, report, target, opt, random_c_batches(report, 1, seed), counting=counting,
                  timeout=timeout)
    record_in_report(out_dir, res)
    return res


def cmd_bench(argv: list[str]) -> int:
    """``mcc bench``: compile, emulate and print the per-layer table and totals (or JSON); optional plot."""
    args = _bench_parser().parse_args(argv)
    model = Path(args.model)
    with tempfile.TemporaryDirectory(prefix="mcc-bench-") as tmp:
        out_dir = Path(args.output) if args.output else Path(tmp) / "project"
        res = bench(model, out_dir, target=args.target, opt_level=args.opt_level, opt=args.opt,
                    calibration=args.calibration, seed=args.seed, counting=args.counting, timeout=args.timeout,
                    patch=patch_options(args))
        title = (f"{model.name} on {res.target} (QEMU {res.board.machine}), mcc -O{args.opt_level}, "
                 f"arm-none-eabi-gcc {res.opt}")
        if args.plot:
            plot_layers(res, f"{title}\n{res.instructions:,} instructions, {_fmt(res.per_mac)} per MAC",
                        Path(args.plot))
        if args.json:
            data = res.to_json()
            data.update(model=str(model), mcc_opt_level=args.opt_level)
            if not args.output:
                data.pop("elf")
                data["project"] = None
            print(json.dumps(data, indent=2))
        else:
            print(f"mcc bench: {title}; one seeded random input (seed {args.seed}); {host_line(res)}")
            print()
            print("\n".join(format_layers(res)))
            print()
            print("\n".join(format_summary(res)))
            if args.plot:
                print(f"wrote {args.plot}")
    if res.host_identical is False:
        raise MccError(f"the outputs of {model} on the emulated {res.target} differ from the host build's")
    return 0
