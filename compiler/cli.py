"""The ``mcc`` command line.

``mcc MODEL -O3 --target cortex-m7 -o DIR`` compiles a model file to a C project; ``mcc run DIR`` builds it for the
host and runs it; ``mcc opt FILE -p PIPELINE`` runs passes on textual IR; ``mcc compare MODEL`` puts mcc beside
TFLite Micro, TVM and onnxruntime; ``mcc passes`` and ``mcc ops`` list what is registered.
Errors a user can cause print one line (plus a source excerpt for parse errors) and exit non-zero; internal
errors print a one-line summary and, with ``--debug`` or ``MCC_DEBUG=1``, the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path

from compiler import __version__
from compiler.errors import MccError, PipelineError
from compiler.ir import Graph
from compiler.pipelines import add_patch_arguments, patch_options

SUBCOMMANDS = ("opt", "run", "analyze", "bench", "compare", "passes", "ops")


def _opt_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mcc opt",
        description="Run a pass pipeline on a textual IR (.mir) file and print or write the result.",
        epilog="Example: mcc opt model.mir -p 'canonicalize,fold-constants,dce' -o out.mir")
    p.add_argument("file", help="input .mir file ('-' reads standard input)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("-p", "--pipeline", help="comma-separated passes, options in braces: 'a,b{opt=1}'")
    group.add_argument("-O", dest="opt_level", type=int, choices=range(4), metavar="LEVEL",
                       help="run the named pipeline of -O0 … -O3")
    p.add_argument("-o", "--output", help="write the result here (a sidecar .npz holds large constants) "
                                          "instead of standard output")
    p.add_argument("--target", default=None, help="target name passed to the passes (e.g. cortex-m7)")
    p.add_argument("--print-ir-after-all", action="store_true", help="print the IR after every pass (stderr)")
    p.add_argument("--print-ir-after", action="append", default=[], metavar="PASS",
                   help="print the IR after each run of PASS (repeatable)")
    p.add_argument("--print-ir-after-change", action="store_true",
                   help="print the IR after every pass that changed it")
    p.add_argument("--time-passes", action="store_true", help="print a table of pass timings (stderr)")
    p.add_argument("--no-verify", action="store_true", help="do not run the verifier after each pass")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_FILE",
                   help="import a module or .py file that registers passes (repeatable)")
    add_patch_arguments(p)
    p.add_argument("--reproducer-dir", default="mcc-reproducers", metavar="DIR",
                   help="where a failing pass writes its reproducer (default: %(default)s)")
    p.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    return p


def _main_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mcc",
        usage="mcc MODEL [-O LEVEL] [--target T] -o DIR [options]\n"
              "       mcc {opt,run,analyze,bench,compare,passes,ops} ...",
        description="mcc compiles deep-learning models (ONNX float or int8 QDQ, or .mir) into standalone int8 C "
                    "for microcontrollers.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n"
               "  mcc MODEL -O3 --target cortex-m7 -o DIR   compile a model to a C project in DIR\n"
               "  mcc run DIR --input IN.npy --output OUT.npy\n"
               "                                            build DIR for the host and run it (mcc run --help)\n"
               "  mcc run DIR --emulate cortex-m7 --input IN.npy\n"
               "                                            run DIR on an emulated Cortex-M, count instructions\n"
               "  mcc analyze MODEL [--plot mem.png]        per-layer memory, MACs and the fit (mcc analyze --help)\n"
               "  mcc bench MODEL --target cortex-m7        instructions, flash and stack on an emulated Cortex-M\n"
               "  mcc opt FILE -p PIPELINE [-o OUT]         run passes on a .mir file (mcc opt --help)\n"
               "  mcc compare MODEL [--against tflm,tvm,ort]\n"
               "                                            mcc beside its peers (mcc compare --help)\n"
               "  mcc passes                                list the registered passes\n"
               "  mcc ops                                   list the registered op kinds\n")
    p.add_argument("--version", action="version", version=f"mcc {__version__}")
    p.add_argument("model", nargs="?", help="model file (.onnx or .mir)")
    p.add_argument("-O", dest="opt_level", type=int, choices=range(4), default=2, metavar="LEVEL",
                   help="optimisation level 0-3 (default 2)")
    p.add_argument("--target", default="cortex-m7",
                   help="cortex-m7 (STM32F746, default), cortex-m4 (STM32F412), stm32h743, cortex-m0plus or host")
    p.add_argument("-o", "--output", metavar="DIR", help="output directory (created or replaced)")
    p.add_argument("--calibration", metavar="FILE",
                   help="representative inputs for quantizing a float model: .npy (a batch for the first input), "
                        ".npz (one array per input name) or a folder of them")
    p.add_argument("--name", help="C symbol prefix (default: from the file name)")
    p.add_argument("--sram", type=int, metavar="BYTES", help="override the target's SRAM budget")
    p.add_argument("--flash", type=int, metavar="BYTES", help="override the target's flash budget")
    add_patch_arguments(p)
    p.add_argument("--reproducer-dir", default="mcc-reproducers", metavar="DIR",
                   help="where a failing pass writes its reproducer (default: %(default)s)")
    p.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mcc`` console script; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("MCC_DEBUG") == "1"
    warnings.showwarning = _show_warning
    try:
        if args and args[0] in SUBCOMMANDS:
            commands = {"opt": _cmd_opt, "run": _cmd_run, "analyze": _cmd_analyze, "bench": _cmd_bench,
                        "compare": _cmd_compare, "passes": _cmd_passes, "ops": _cmd_ops}
            return commands[args[0]](args[1:])
        return _cmd_compile(args)
    except MccError as e:
        print(f"mcc: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("mcc: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        print(f"mcc: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        if debug:
            traceback.print_exc()
        else:
            print("mcc: this is a bug in mcc; rerun with --debug (or MCC_DEBUG=1) for the traceback",
                  file=sys.stderr)
        return 70


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    """Warnings reach the user as one line each, like errors."""
    print(f"mcc: warning: {message}", file=sys.stderr)


def _cmd_compile(argv: list[str]) -> int:
    parser = _main_parser()
    args = parser.parse_args(argv)
    if args.model is None:
        parser.print_help()
        return 2
    if not args.output:
        parser.error("-o DIR is required to compile a model")
    from compiler.driver import compile_model

    report = compile_model(Path(args.model), Path(args.output), opt_level=args.opt_level, target=args.target,
                           calibration=args.calibration, name=args.name, sram=args.sram, flash=args.flash,
                           reproducer_dir=Path(args.reproducer_dir), patch=patch_options(args))
    t = report["target"]
    print(f"mcc: wrote {args.output}: {report['name']}.c/.h for {t['name']}; peak SRAM {report['peak_sram_bytes']:,} B "
          f"of {t['sram_bytes']:,}, flash (constants) {report['flash_bytes']:,} B, {report['macs']:,} MACs")
    return 0


def _cmd_run(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="mcc run",
        description="Build a generated project for the host (cached) and run it on arrays in the original model's "
                    "input shape and dtype; float inputs are quantized and outputs dequantized as the model's edges "
                    "say, so results compare directly with the source framework. With --emulate, cross-compile it "
                    "and run it on an emulated Cortex-M in QEMU instead, check the outputs against the host build "
                    "and print exact instruction counts, flash, SRAM and stack (docs/cortexm.md).")
    p.add_argument("dir", help="a directory written by 'mcc MODEL -o DIR'")
    p.add_argument("--input", required=True, metavar="IN",
                   help=".npy (one input; shape = model shape, or [N, *model shape] for a batch) or .npz by input name")
    p.add_argument("--output", metavar="OUT", help=".npy (first output) or .npz (all outputs); required without "
                                                   "--emulate")
    p.add_argument("--sanitize", action="store_true", help="build and run with AddressSanitizer and UBSan")
    p.add_argument("--emulate", metavar="TARGET", help="run on an emulated cortex-m7 or cortex-m4 (or stm32h743)")
    p.add_argument("--opt", default="O3", metavar="CLEVEL",
                   help="with --emulate: arm-none-eabi-gcc optimisation O0, Os, O2 or O3 (default O3)")
    p.add_argument("--counting", default="auto", choices=("auto", "plugin", "systick"),
                   help="with --emulate: instruction counting by the QEMU plugin (exact), SysTick (±40) or auto")
    p.add_argument("--timeout", type=float, default=1800.0, metavar="SECONDS",
                   help="with --emulate: QEMU time limit (default 1800)")
    p.add_argument("--json", action="store_true", help="with --emulate: print the measurements as JSON")
    p.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    args = p.parse_args(argv)
    project = Path(args.dir)
    if args.emulate is not None:
        if args.sanitize:
            p.error("--sanitize applies to host runs, not to --emulate")
        from compiler.emulate_cmd import run_emulated

        return run_emulated(project, Path(args.input), Path(args.output) if args.output else None,
                            target=args.emulate, opt=args.opt, as_json=args.json, counting=args.counting,
                            timeout=args.timeout)
    if args.output is None:
        p.error("--output is required (unless --emulate)")
    import numpy as np

    from compiler.runner import load_inputs, run_project, save_outputs

    arrays = load_inputs(project, Path(args.input))
    outputs = run_project(project, arrays, sanitize=args.sanitize)
    save_outputs(Path(args.output), outputs)
    shapes = ", ".join(f"{name}{list(np.shape(a))}" for name, a in outputs.items())
    print(f"mcc: ran {project}: wrote {args.output} ({shapes})")
    return 0


def _cmd_bench(argv: list[str]) -> int:
    from compiler.emulate_cmd import cmd_bench

    return cmd_bench(argv)


def _cmd_compare(argv: list[str]) -> int:
    from compiler.compare import PEERS, compare, format_table, parse_peers

    p = argparse.ArgumentParser(
        prog="mcc compare",
        description="Run mcc and its peers (TFLite Micro, TVM, onnxruntime) on one model with the same seeded "
                    "random inputs and print peak SRAM, flash, host latency of one inference and output agreement "
                    "with mcc. A .tflite model runs in TFLM and TVM; onnxruntime (and TVM when it cannot read the "
                    ".tflite) runs its ONNX form (--onnx, or the derived_onnx/ file beside an MLPerf Tiny model). "
                    "See docs/compare.md.")
    p.add_argument("model", help="model file (.tflite, .onnx or .mir)")
    p.add_argument("--against", default=",".join(PEERS), metavar="PEERS",
                   help="comma-separated peers from tflm, tvm, ort (default: all)")
    p.add_argument("--onnx", metavar="PATH", help="the ONNX form of a .tflite model, for onnxruntime (and TVM)")
    p.add_argument("-n", type=int, default=100, metavar="N", help="number of seeded random inputs (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the inputs (default 0)")
    p.add_argument("--repeat", type=int, metavar="R",
                   help="time R inferences per runtime (default: about 0.5 s worth, 10 to 2000)")
    p.add_argument("-O", dest="opt_level", type=int, choices=range(4), default=3, metavar="LEVEL",
                   help="mcc's optimisation level (default 3)")
    p.add_argument("--target", default="cortex-m7", help="mcc's target (budgets are not enforced here)")
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    p.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    args = p.parse_args(argv)
    peers = parse_peers(args.against)
    result = compare(Path(args.model), against=peers, onnx=Path(args.onnx) if args.onnx else None, n=args.n,
                     seed=args.seed, repeat=args.repeat, opt_level=args.opt_level, target=args.target,
                     log=lambda msg: print(f"mcc compare: {msg}", file=sys.stderr))
    print(f"mcc compare: {args.model}, {args.n} seeded random inputs (seed {args.seed})")
    print(format_table(result), end="")
    if args.json:
        import json

        try:
            Path(args.json).write_text(json.dumps(result.to_json(), indent=2) + "\n")
        except OSError as e:
            raise MccError(f"cannot write {args.json}: {e.strerror}") from None
    ours = result.results[0]
    if not ours.ok:  # the table is printed either way; a failure of mcc itself is an error for scripts
        print(f"mcc: error: mcc failed on {args.model}: {ours.status}", file=sys.stderr)
        return 2
    return 0


def _cmd_analyze(argv: list[str]) -> int:
    from compiler.analyze_cmd import cmd_analyze

    return cmd_analyze(argv)


def _cmd_passes(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="mcc passes", description="List the registered passes.")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_FILE")
    args = p.parse_args(argv)
    from compiler.passmanager import available_passes, get_pass_class, load_plugin

    for spec in args.plugin:
        load_plugin(spec)
    for name in available_passes():
        doc = (get_pass_class(name).__doc__ or "").strip().splitlines()
        print(f"{name:24} {doc[0] if doc else ''}")
    return 0


def _cmd_ops(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="mcc ops", description="List the registered op kinds.").parse_args(argv)
    from compiler.opdef import get_opdef, known_ops

    for name in known_ops():
        print(f"{name:24} {get_opdef(name).summary}")
    return 0


def _write_atomically(graph: Graph, out: Path) -> None:
    """Write ``out`` (and its sidecar) through a temporary directory, so a failure leaves nothing half-written."""
    from frontend.mir import write_file

    if not out.parent.is_dir():
        raise MccError(f"cannot write {out}: directory {out.parent} does not exist")
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".mcc-") as tmp:
        write_file(graph, Path(tmp) / out.name)
        produced = {p.name for p in Path(tmp).iterdir()}
        for name in produced:
            os.replace(Path(tmp) / name, out.parent / name)
    sidecar = out.with_suffix(".npz")
    if sidecar.name not in produced and sidecar.exists():
        sidecar.unlink()


def _read_pipeline_header(text: str) -> str | None:
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("// PIPELINE:"):
            return s[len("// PIPELINE:"):].strip()
        if s and not s.startswith("//"):
            break
    return None


def _cmd_opt(argv: list[str]) -> int:
    args = _opt_parser().parse_args(argv)
    from compiler.passmanager import PassContext, PassManager, load_plugin, parse_pipeline
    from compiler.pipelines import opt_pipeline
    from frontend.mir import parse, parse_file

    for spec in args.plugin:
        load_plugin(spec)
    if args.file == "-":
        text = sys.stdin.read()
        graph = parse(text, "<stdin>", verify=not args.no_verify)
    else:
        path = Path(args.file)
        if not path.is_file():
            raise PipelineError(f"no such file: {args.file}")
        text = path.read_text()
        graph = parse_file(path, verify=not args.no_verify)
    if args.opt_level is not None:
        pipeline = opt_pipeline(args.opt_level)
    elif args.pipeline is not None:
        pipeline = args.pipeline
    else:
        pipeline = _read_pipeline_header(text) or ""
    passes = parse_pipeline(pipeline)
    pm = PassManager(
        passes, PassContext(target=args.target, opt_level=args.opt_level or 0),
        verify_each=not args.no_verify, print_ir_after_all=args.print_ir_after_all,
        print_ir_after=frozenset(args.print_ir_after), print_ir_after_change=args.print_ir_after_change,
        time_passes=args.time_passes, reproducer_dir=Path(args.reproducer_dir))
    unknown = [n for n in args.print_ir_after if n not in {p.name for p in passes}]
    if unknown:
        raise PipelineError(f"--print-ir-after {unknown[0]}: no such pass in the pipeline '{pipeline}'")
    pm.run(graph)
    if args.output:
        _write_atomically(graph, Path(args.output))
    else:
        from compiler.printer import print_graph

        sys.stdout.write(print_graph(graph))
    return 0


if __name__ == "__main__":
    sys.exit(main())
