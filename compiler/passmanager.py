"""Passes, the pass registry, pipeline strings and the pass manager.

A pass is a small frozen dataclass: a kebab-case ``name``, a docstring stating its preconditions and
postconditions, typed options as fields, and ``run(graph, ctx) -> bool`` (True when it changed the graph).

Passes are found by name. Built-in passes are imported lazily from ``passes/``; user passes register with the
:func:`register_pass` decorator or through the ``mcc.passes`` entry-point group (each entry point names a pass
class). Registering a name twice is an error.

Pipelines are text: ``fold-constants,dce,my-pass{limit=4,mode=fast}``. Option values are converted to the field's
declared type (int, float, bool, str); a value with other characters than letters, digits and ``_.-/:~+`` is
written in double quotes (``quantize{calibration="my data/cal.npz"}``). Nothing is ever evaluated.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import re
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, TextIO, TypeVar, get_type_hints

from compiler.errors import MccError, PassError, PipelineError, VerifyError
from compiler.ir import Graph
from compiler.verifier import verify


@dataclass
class PassContext:
    """What a pass may know about the compilation beyond the graph: target name and optimisation level."""

    target: str | None = None
    opt_level: int = 0
    notes: dict[str, Any] = field(default_factory=dict)
    """What passes decided, for the report (e.g. ``patch_stage``: the split and patch count chosen)."""


@dataclass(frozen=True)
class Pass:
    """Base class of every pass. Subclasses are frozen dataclasses whose fields are the pass options."""

    name: ClassVar[str] = ""

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        """Transform ``graph`` in place; return True when it changed."""
        raise NotImplementedError

    def spec(self) -> str:
        """The pipeline text that recreates this pass with its options (defaults left out)."""
        opts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                text = str(value).lower() if isinstance(value, bool) else str(value)
                if not re.fullmatch(r"[A-Za-z0-9_.\-/:~+]+", text):
                    text = '"' + text + '"'
                opts.append(f"{f.name.replace('_', '-')}={text}")
        return self.name + ("{" + ",".join(opts) + "}" if opts else "")


P = TypeVar("P", bound=type[Pass])

BUILTIN_PASSES: dict[str, str] = {
    "canonicalize": "passes.canonicalize:Canonicalize",
    "dce": "passes.dce:DeadCodeElimination",
    "fold-constants": "passes.fold_constants:FoldConstants",
    "fuse-activation": "passes.fuse_activation:FuseActivation",
    "fold-pad": "passes.fold_pad:FoldPad",
    "fold-qdq": "passes.fold_qdq:FoldQDQ",
    "matmul-to-fc": "passes.matmul_to_fc:MatMulToFC",
    "fold-affine": "passes.fold_affine:FoldAffine",
    "quantize": "passes.quantize:Quantize",
    "schedule-memory": "passes.schedule_memory:ScheduleMemory",
    "plan-memory": "passes.plan_memory:PlanMemory",
    "patch-stage": "passes.patch_stage:PatchStage",
}
"""Built-in pass names and where their classes live (imported on first use)."""

_registered: dict[str, type[Pass]] = {}
_entry_points_loaded = False
_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


def register_pass(cls: P) -> P:
    """Class decorator registering a user pass under ``cls.name`` (kebab-case, unique)."""
    name = getattr(cls, "name", "")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise PipelineError(f"pass class {cls.__qualname__} needs a kebab-case 'name', got {name!r}")
    if name in BUILTIN_PASSES or name in _registered:
        existing = _registered.get(name)
        if existing is cls:
            return cls
        where = BUILTIN_PASSES.get(name) or f"{existing.__module__}.{existing.__qualname__}"  # type: ignore[union-attr]
        raise PipelineError(f"pass '{name}' is registered twice ({where} and {cls.__module__}.{cls.__qualname__})")
    if not (isinstance(cls, type) and issubclass(cls, Pass)):
        raise PipelineError(f"{cls!r} is not a subclass of compiler.passmanager.Pass")
    _registered[name] = cls
    return cls


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in metadata.entry_points(group="mcc.passes"):
        try:
            cls = ep.load()
        except Exception as e:
            raise PipelineError(f"cannot load pass plugin '{ep.name}' ({ep.value}): {type(e).__name__}: {e}") from None
        if getattr(cls, "name", None) != ep.name:
            raise PipelineError(f"entry point '{ep.name}' names {ep.value}, whose pass name is "
                                f"{getattr(cls, 'name', None)!r}; the two must match")
        register_pass(cls)


def reload_entry_points() -> None:
    """Look at the ``mcc.passes`` entry points again (after installing a plugin in a running process)."""
    global _entry_points_loaded
    _entry_points_loaded = False
    _load_entry_points()


def available_passes() -> list[str]:
    """Every pass name: built-ins, decorator-registered and entry-point plugins."""
    _load_entry_points()
    return sorted({*BUILTIN_PASSES, *_registered})


def get_pass_class(name: str) -> type[Pass]:
    """The pass class registered as ``name``; unknown names raise :class:`PipelineError` listing known ones."""
    if name in _registered:
        return _registered[name]
    if name in BUILTIN_PASSES:
        module, _, attr = BUILTIN_PASSES[name].partition(":")
        cls = getattr(importlib.import_module(module), attr)
        _registered[name] = cls
        return cls
    _load_entry_points()
    if name in _registered:
        return _registered[name]
    raise PipelineError(f"unknown pass '{name}'; known passes: {', '.join(available_passes())}")


def load_plugin(spec: str) -> None:
    """Import a plugin module (a dotted name or a ``.py`` path) so that its ``@register_pass`` classes register."""
    path = Path(spec)
    try:
        if spec.endswith(".py") or path.is_file():
            if not path.is_file():
                raise PipelineError(f"plugin file not found: {spec}")
            import importlib.util

            mod_name = f"mcc_plugin_{path.stem}"
            if mod_name in sys.modules:
                return
            loader_spec = importlib.util.spec_from_file_location(mod_name, path)
            if loader_spec is None or loader_spec.loader is None:
                raise PipelineError(f"cannot load plugin file {spec}")
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[mod_name] = module
            loader_spec.loader.exec_module(module)
        else:
            importlib.import_module(spec)
    except MccError:
        raise
    except Exception as e:
        raise PipelineError(f"cannot load plugin {spec}: {type(e).__name__}: {e}") from None


# -- pipeline text -------------------------------------------------------------------------------------------------
_TOKEN_RE = re.compile(r'\s*(?:(?P<name>[A-Za-z0-9_.\-/:~+]+)|"(?P<quoted>[^"]*)"|(?P<punct>[{}=,]))')


def parse_pipeline(text: str) -> list[Pass]:
    """Parse ``a,b{opt=1,other=x},c`` into pass instances. Errors say where in the text they are."""
    passes: list[Pass] = []
    pos = 0
    tokens: list[tuple[str, str, int]] = []
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN_RE.match(text, pos)
        if m is None or m.end() == pos:
            raise PipelineError(f"bad pipeline at column {pos + 1}: unexpected {text[pos:].strip()[:1]!r} "
                                f"in {text!r}")
        if m.group("quoted") is not None:
            tokens.append(("name", m.group("quoted"), m.start("quoted")))
        else:
            kind = "name" if m.group("name") else "punct"
            tokens.append((kind, m.group(kind), m.start(kind) + 1))
        pos = m.end()
    i = 0

    def expect(kind: str, value: str | None = None) -> tuple[str, str, int]:
        nonlocal i
        if i >= len(tokens):
            raise PipelineError(f"bad pipeline: unexpected end of {text!r}, expected {value or kind}")
        tok = tokens[i]
        if tok[0] != kind or (value is not None and tok[1] != value):
            raise PipelineError(f"bad pipeline at column {tok[2]}: expected {value or 'a pass name'}, "
                                f"got {tok[1]!r} in {text!r}")
        i += 1
        return tok

    if not tokens:
        return []
    while True:
        _, name, _ = expect("name")
        options: dict[str, str] = {}
        if i < len(tokens) and tokens[i][1] == "{":
            i += 1
            while True:
                _, key, col = expect("name")
                expect("punct", "=")
                _, value, _ = expect("name")
                if key in options:
                    raise PipelineError(f"bad pipeline at column {col}: option '{key}' given twice")
                options[key] = value
                if i < len(tokens) and tokens[i][1] == ",":
                    i += 1
                    continue
                expect("punct", "}")
                break
        passes.append(make_pass(name, options))
        if i >= len(tokens):
            return passes
        expect("punct", ",")


def make_pass(name: str, options: dict[str, str] | None = None) -> Pass:
    """Instantiate pass ``name`` with textual options converted to the declared field types."""
    cls = get_pass_class(name)
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, text in (options or {}).items():
        fname = key.replace("-", "_")
        if fname not in fields:
            known = ", ".join(f.replace("_", "-") for f in fields) or "none"
            raise PipelineError(f"pass '{name}' has no option '{key}' (options: {known})")
        kwargs[fname] = _convert_option(name, key, text, hints.get(fname, str))
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise PipelineError(f"pass '{name}': {e}") from None


def _convert_option(pass_name: str, key: str, text: str, typ: Any) -> Any:
    try:
        if typ is bool:
            if text.lower() in ("true", "1", "yes", "on"):
                return True
            if text.lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            return int(text, 0)
        if typ is float:
            return float(text)
        return text
    except ValueError:
        raise PipelineError(f"pass '{pass_name}': option '{key}' needs a {getattr(typ, '__name__', typ)}, "
                            f"got {text!r}") from None


def pipeline_text(passes: Sequence[Pass]) -> str:
    """The pipeline string of a list of passes (inverse of :func:`parse_pipeline`)."""
    return ",".join(p.spec() for p in passes)


# -- the pass manager ---------------------------------------------------------------------------------------------
@dataclass
class PassTiming:
    """Wall time and change flag of one pass run."""

    name: str
    seconds: float
    changed: bool


@dataclass
class PassManager:
    """Runs passes in order, verifying after each (by default), printing and timing on request.

    A pass that raises, or leaves IR the verifier rejects, becomes a :class:`PassError` naming the pass; when
    ``reproducer_dir`` is set, the IR it received and the rest of the pipeline are written there first.
    Errors a user caused (e.g. a model that does not fit) pass through unchanged.
    """

    passes: list[Pass]
    ctx: PassContext = field(default_factory=PassContext)
    verify_each: bool = True
    print_ir_after_all: bool = False
    print_ir_after: frozenset[str] = frozenset()
    print_ir_after_change: bool = False
    time_passes: bool = False
    reproducer_dir: Path | None = None
    out: TextIO = sys.stderr
    printer: Callable[[Graph], str] | None = None
    timings: list[PassTiming] = field(default_factory=list)

    def run(self, graph: Graph) -> bool:
        """Run the pipeline on ``graph`` in place; returns whether any pass changed it."""
        if self.verify_each:
            verify(graph)
        any_change = False
        for index, p in enumerate(self.passes):
            snapshot = graph.clone() if self.reproducer_dir is not None else None
            start = time.perf_counter()
            try:
                changed = bool(p.run(graph, self.ctx))
                if changed and p.name != "plan-memory" and graph.arena_bytes is not None:
                    graph.clear_memory_plan()  # offsets are derived data: a changed graph must be planned again
                if self.verify_each:
                    verify(graph)
            except VerifyError as e:
                raise self._failure(p, index, snapshot, f"produced invalid IR: {e}") from None
            except MccError:
                raise
            except Exception as e:
                detail = "".join(traceback.format_exception_only(type(e), e)).strip()
                raise self._failure(p, index, snapshot, f"crashed: {detail}") from e
            elapsed = time.perf_counter() - start
            self.timings.append(PassTiming(p.name, elapsed, changed))
            any_change |= changed
            if self.print_ir_after_all or p.name in self.print_ir_after or (self.print_ir_after_change and changed):
                self.out.write(f"// ----- IR after {p.spec()}{'' if changed else ' (unchanged)'} -----\n")
                self.out.write(self._print(graph))
        if self.time_passes:
            self.out.write(self.timing_report())
        return any_change

    def _print(self, graph: Graph) -> str:
        if self.printer is not None:
            return self.printer(graph)
        from compiler.printer import print_graph

        return print_graph(graph)

    def _failure(self, p: Pass, index: int, snapshot: Graph | None, what: str) -> PassError:
        repro = None
        if snapshot is not None and self.reproducer_dir is not None:
            repro = str(write_reproducer(self.reproducer_dir, snapshot, self.passes[index:], what, self._print))
        msg = f"pass '{p.name}' {what}"
        if repro:
            msg += f" (reproducer: {repro})"
        return PassError(msg, pass_name=p.name, reproducer=repro)

    def timing_report(self) -> str:
        """A table of pass wall times, one line per pass run, plus the total."""
        buf = io.StringIO()
        total = sum(t.seconds for t in self.timings) or 1e-12
        buf.write("===- pass execution timing -===\n")
        buf.write(f"  {'wall (ms)':>10}  {'share':>6}  pass\n")
        for t in self.timings:
            mark = "" if t.changed else "  (no change)"
            buf.write(f"  {t.seconds * 1e3:10.3f}  {100 * t.seconds / total:5.1f}%  {t.name}{mark}\n")
        buf.write(f"  {total * 1e3:10.3f}  100.0%  total\n")
        return buf.getvalue()


def write_reproducer(directory: Path, graph: Graph, remaining: Sequence[Pass], what: str,
                     printer: Callable[[Graph], str]) -> Path:
    """Write the IR a failing pass received, with the pipeline from that pass on, so ``mcc opt FILE`` replays it."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = directory / f"{graph.name}-{remaining[0].name}-{stamp}.mir"
    header = "".join(f"// {line}\n" for line in f"mcc reproducer: pass '{remaining[0].name}' {what}".splitlines())
    path.write_text(f"{header}// PIPELINE: {pipeline_text(remaining)}\n{printer(graph)}")
    return path
