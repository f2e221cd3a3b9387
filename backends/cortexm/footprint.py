"""Flash, RAM and stack of an emulation image, read from the ELF (pyelftools) and GCC's call-graph files.

Flash = every allocated read-only section (code, constants, exception index) + the initial values of ``.data``;
static RAM = ``.data`` + ``.bss``. The harness's own share (symbols of ``runtime_c/cortexm`` and the glue) is
reported separately, so the model's figures are the totals minus it. The static stack bound is the deepest path
of the call graph GCC writes with ``-fcallgraph-info=su`` (frame sizes from ``-fstack-usage``), from a root
function down; functions without a graph entry (the C library's ``memcpy`` and ``memset``) are listed, not
guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

HARNESS_FILE_PREFIX = "mcc_emu_"


@dataclass(frozen=True)
class Footprint:
    """Section sizes of an image in bytes, and the harness's share of them."""

    text_bytes: int
    rodata_bytes: int
    data_bytes: int
    bss_bytes: int
    harness_flash_bytes: int
    harness_ram_bytes: int

    @property
    def flash_bytes(self) -> int:
        """Code + read-only data + initial values of ``.data``."""
        return self.text_bytes + self.rodata_bytes + self.data_bytes

    @property
    def static_ram_bytes(self) -> int:
        """``.data`` + ``.bss``."""
        return self.data_bytes + self.bss_bytes


def elf_footprint(elf: Path) -> Footprint:
    """Read section and symbol sizes of ``elf``."""
    from elftools.elf.constants import SH_FLAGS
    from elftools.elf.elffile import ELFFile

    sizes = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
    kind_of: dict[int, str] = {}
    with elf.open("rb") as f:
        ef = ELFFile(f)
        for index, sec in enumerate(ef.iter_sections()):
            flags = sec["sh_flags"]
            if not flags & SH_FLAGS.SHF_ALLOC or sec["sh_size"] == 0:
                continue
            if sec["sh_type"] == "SHT_NOBITS":
                kind = "bss"
            elif flags & SH_FLAGS.SHF_WRITE:
                kind = "data"
            elif flags & SH_FLAGS.SHF_EXECINSTR:
                kind = "text"
            else:
                kind = "rodata"
            sizes[kind] += int(sec["sh_size"])
            kind_of[index] = kind
        harness_flash = harness_ram = 0
        symtab = ef.get_section_by_name(".symtab")
        current_file = ""
        for sym in symtab.iter_symbols() if symtab is not None else ():  # type: ignore[attr-defined]
            info = sym["st_info"]
            if info["type"] == "STT_FILE":
                current_file = sym.name or ""
                continue
            if info["type"] not in ("STT_FUNC", "STT_OBJECT") or not isinstance(sym["st_shndx"], int):
                continue
            name = sym.name or ""
            local = info["bind"] == "STB_LOCAL"
            ours = (current_file.startswith(HARNESS_FILE_PREFIX) if local
                    else name.startswith(HARNESS_FILE_PREFIX) or name == "main")
            where = kind_of.get(sym["st_shndx"])
            if not ours or where is None:
                continue
            size = int(sym["st_size"])
            if where in ("text", "rodata", "data"):
                harness_flash += size
            if where in ("data", "bss"):
                harness_ram += size
    return Footprint(sizes["text"], sizes["rodata"], sizes["data"], sizes["bss"], harness_flash, harness_ram)


@dataclass
class StackBound:
    """The deepest call path's stack use as GCC's call graph gives it."""

    bytes: int
    path: list[str]
    unknown: list[str] = field(default_factory=list)
    """Callees on the graph without a frame size (library functions): not included in ``bytes``."""
    dynamic: list[str] = field(default_factory=list)
    """Functions whose frame is not static (VLAs, alloca): the bound does not hold for them."""


_NODE = re.compile(r'node: \{ title: "([^"]+)" label: "([^"]*)"')
_EDGE = re.compile(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"')
_FRAME = re.compile(r"\\n(\d+) bytes \((static|dynamic|dynamic,bounded)\)")


def stack_bound(ci_files: list[Path], root: str) -> StackBound:
    """Deepest stack from ``root`` through the call graphs in ``ci_files`` (``.ci`` files of the image)."""
    frames: dict[str, tuple[int, str]] = {}
    edges: dict[str, set[str]] = {}
    for path in ci_files:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            if m := _NODE.search(line):
                fm = _FRAME.search(m.group(2))
                if fm:
                    frames[m.group(1)] = (int(fm.group(1)), fm.group(2))
            elif m := _EDGE.search(line):
                edges.setdefault(m.group(1), set()).add(m.group(2))
    unknown: set[str] = set()
    dynamic: set[str] = set()
    memo: dict[str, tuple[int, list[str]]] = {}

    def deepest(fn: str, active: frozenset[str]) -> tuple[int, list[str]]:
        if fn in memo:
            return memo[fn]
        if fn not in frames:
            unknown.add(fn)
            return 0, [fn]
        size, kind = frames[fn]
        if kind != "static":
            dynamic.add(fn)
        best: tuple[int, list[str]] = (0, [])
        for callee in sorted(edges.get(fn, ())):
            if callee in active:  # recursion: no finite bound; report the cycle as dynamic
                dynamic.add(callee)
                continue
            sub = deepest(callee, active | {callee})
            if sub[0] > best[0] or not best[1]:
                best = sub
        memo[fn] = (size + best[0], [fn, *best[1]])
        return memo[fn]

    total, chain = deepest(root, frozenset({root}))
    return StackBound(total, [_short(f) for f in chain], sorted(map(_short, unknown)), sorted(map(_short, dynamic)))


def _short(function: str) -> str:
    """GCC names a static function ``/path/file.c:name``; keep ``file.c:name``."""
    return Path(function).name if "/" in function else function
