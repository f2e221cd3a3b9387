"""A compile cache for one test session, in front of the host ``cc`` and ``arm-none-eabi-gcc`` (set up in conftest.py).

Hundreds of tests build a generated project, and each project carries verbatim copies of the runtime kernels
(``mcc_gemm.c`` alone takes seconds to compile, tens of seconds with the sanitizers), so most of a test run used to
be gcc compiling the same kernel with the same flags again. This wrapper compiles each distinct translation unit
once per session and copies the result for every later identical compile.

An invocation is cached only when it compiles one ``.c`` file into one object (``-c SRC.c -o OUT.o``) and writes no
other file than the object and, with ``-fstack-usage`` / ``-fcallgraph-info``, the ``OUT.su`` / ``OUT.ci`` next to it
(the emulation builds read those for the stack bound). Its key is the real compiler (path, size, mtime), every
argument except the output path, and the *preprocessed* translation unit, so any change to the source, to a header
it includes or to a flag is a miss. Where the source is named by an absolute path (the emulation builds), its
directory is replaced by a placeholder in the key and in the stored ``.su``/``.ci`` text, and put back on a hit, so
two projects with the same kernel share it. Everything else (links, ``-dumpfullversion``, the QEMU plugin's build)
runs the real compiler unchanged. Compiles of one key are serialised (a lock file per key), so two xdist workers
asking for the same kernel at once compile it once. A compile that fails, or prints anything, is never stored: a
warning under ``-Werror`` fails again every time.

A hit's object is byte-identical to what the compiler produced for the same translation unit elsewhere; the only
difference from compiling it again is where a path is embedded in the object (the ELF file symbol, ``-g`` debug
info): it names the first project's directory, which changes at most the paths a sanitizer report would print.

Environment: ``MCC_TEST_CC_REAL`` the compiler to run (an absolute path; default ``cc``), ``MCC_TEST_CC_CACHE``
the cache directory (without it every call goes straight to the compiler). The cache lives for one pytest run, so a
fresh clone compiles every kernel at least once.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

TAKES_VALUE = {"-I", "-D", "-U", "-include", "-imacros", "-isystem", "-iquote", "-idirafter"}
"""Options whose value is the next argument."""

WRITES_MORE = ("-M", "-save-temps", "-fdump-", "--coverage", "-ftest-coverage", "-fprofile-", "-gsplit-dwarf", "-E",
               "-S", "-Wp,", "-x", "@", "-flto", "-fcallgraph-info=da")
"""Options that make gcc write other files than those handled, or do something other than compile C to an object."""

AUX = {"-fstack-usage": ".su", "-fcallgraph-info": ".ci"}
"""Options that write a text file next to the object, and its suffix."""

PLACEHOLDER = "@MCC_TEST_SRCDIR@"


class Plan:
    """A cacheable compile: the object, the arguments without ``-o OUT``, the source's directory, the aux files."""

    def __init__(self, out: str, rest: list[str], source: str) -> None:
        self.out, self.rest = out, rest
        self.srcdir = os.path.dirname(source) if os.path.isabs(source) else ""
        stem = out[:-2]
        self.aux = sorted({stem + suffix for a in rest for opt, suffix in AUX.items()
                           if a == opt or a.startswith(opt + "=")})

    def normal(self, text: str) -> str:
        return text.replace(self.srcdir, PLACEHOLDER) if self.srcdir else text


def cacheable(args: list[str]) -> Plan | None:
    """The plan of a one-file compile to an object that writes nothing else we cannot cache, else None."""
    if args.count("-c") != 1 or args.count("-o") != 1:
        return None
    i = args.index("-o")
    if i + 1 >= len(args):
        return None
    out, rest = args[i + 1], args[:i] + args[i + 2:]
    sources, skip = [], False
    for a in rest:
        if skip:
            skip = False
        elif a in TAKES_VALUE:
            skip = True
        elif a.startswith(WRITES_MORE):
            return None
        elif not a.startswith("-"):
            sources.append(a)
    if len(sources) != 1 or not sources[0].endswith(".c") or not out.endswith(".o"):
        return None
    return Plan(out, rest, sources[0])


def _key(real: str, plan: Plan) -> str | None:
    """The cache key, or None when the preprocessor fails (the real compile then reports the error)."""
    exe = shutil.which(real)
    if exe is None:
        return None
    st = os.stat(exe)
    # -fno-working-directory: with -g, gcc records the current directory in the preprocessed output; leave it out
    pre = subprocess.run([exe, *[a for a in plan.rest if a != "-c" and not a.startswith(tuple(AUX))], "-E",
                          "-fno-working-directory"], capture_output=True)
    if pre.returncode != 0:
        return None
    h = hashlib.sha256()
    for part in (os.path.realpath(exe), str(st.st_size), str(st.st_mtime_ns), *map(plan.normal, plan.rest)):
        h.update(part.encode() + b"\0")
    h.update(pre.stdout.replace(plan.srcdir.encode(), PLACEHOLDER.encode()) if plan.srcdir else pre.stdout)
    return h.hexdigest()


def _write_atomically(dst: str, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dst) or ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dst)
    except BaseException:
        os.unlink(tmp)
        raise


def _restore(entry: str, plan: Plan) -> bool:
    """Copy a stored compile to the plan's outputs; False when the entry is missing or incomplete."""
    stored = [entry + ".o", *(f"{entry}.{k}{os.path.splitext(a)[1]}" for k, a in enumerate(plan.aux))]
    if not all(os.path.isfile(s) for s in stored):
        return False
    with open(stored[0], "rb") as f:
        _write_atomically(plan.out, f.read())
    for src, dst in zip(stored[1:], plan.aux, strict=True):
        with open(src, encoding="utf-8") as f:
            text = f.read()
        _write_atomically(dst, (text.replace(PLACEHOLDER, plan.srcdir) if plan.srcdir else text).encode())
    return True


def _store(entry: str, plan: Plan) -> None:
    """Store a successful compile's outputs (the aux files with the source directory replaced by the placeholder)."""
    if not all(os.path.isfile(a) for a in plan.aux):
        return
    for k, a in enumerate(plan.aux):
        with open(a, encoding="utf-8") as f:
            _write_atomically(f"{entry}.{k}{os.path.splitext(a)[1]}", plan.normal(f.read()).encode())
    with open(plan.out, "rb") as f:
        _write_atomically(entry + ".o", f.read())  # last: the object's presence marks a complete entry


def main(args: list[str]) -> int:
    real = os.environ.get("MCC_TEST_CC_REAL") or "cc"
    cache = os.environ.get("MCC_TEST_CC_CACHE")
    plan = cacheable(args) if cache and os.path.isdir(cache) else None
    key = _key(real, plan) if plan else None
    if plan is None or key is None or cache is None:
        os.execvp(real, [real, *args])
    entry = os.path.join(cache, key)
    # one compile per key: a second worker asking for the same translation unit waits for the first one's result
    with open(entry + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _restore(entry, plan):
            _log(cache, "hit", plan.out, 0.0)
            return 0
        t0 = time.monotonic()
        r = subprocess.run([real, *args], capture_output=True)
        sys.stdout.buffer.write(r.stdout)
        sys.stderr.buffer.write(r.stderr)
        if r.returncode == 0 and not r.stdout and not r.stderr:
            _store(entry, plan)
        _log(cache, "miss", plan.out, time.monotonic() - t0)
        return r.returncode


def _log(cache: str, what: str, out: str, seconds: float) -> None:
    """One line per cacheable compile in ``CACHE/log`` (hit rate: ``cut -d' ' -f1 log | sort | uniq -c``)."""
    with open(os.path.join(cache, "log"), "a") as f:
        f.write(f"{what} {seconds:.2f} {os.path.basename(out)}\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
