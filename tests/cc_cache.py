"""A compile cache for one test session: the ``CC`` of the generated projects' host builds (set in conftest.py).

Hundreds of tests build a generated project, and each project carries verbatim copies of the runtime kernels
(``mcc_gemm.c`` alone takes seconds to compile, tens of seconds with the sanitizers), so most of a test run used to
be gcc compiling the same kernel with the same flags again. This wrapper compiles each distinct translation unit
once per session and copies the object for every later identical compile.

An invocation is cached only when it compiles one ``.c`` file into one object (``-c SRC.c -o OUT.o``) and writes no
other file (no ``-M*``, ``-fstack-usage``, ``-save-temps`` ...). Its key is the real compiler (path, size, mtime),
every argument except the output path, and the *preprocessed* translation unit, so any change to the source, to a
header it includes or to a flag is a miss. Everything else (links, the QEMU plugin's build) runs the real compiler
unchanged. A compile that fails, or prints anything, is never stored: a warning under ``-Werror`` fails again
every time. A hit's object is byte-identical to what the compiler produced for the same translation unit; with
``-g`` (the sanitizer builds) its debug info names the directory of the project that compiled it first, which only
changes the paths a sanitizer report would print.

Environment: ``MCC_TEST_CC_REAL`` the compiler to run (default ``cc``), ``MCC_TEST_CC_CACHE`` the cache directory
(without it every call goes straight to the compiler). The cache lives for one pytest run (conftest.py creates and
removes it), so a fresh clone compiles every kernel at least once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

TAKES_VALUE = {"-I", "-D", "-U", "-include", "-imacros", "-isystem", "-iquote", "-idirafter"}
"""Options whose value is the next argument."""

WRITES_MORE = ("-M", "-fstack-usage", "-fcallgraph-info", "-save-temps", "-fdump-", "--coverage", "-ftest-coverage",
               "-fprofile-", "-gsplit-dwarf", "-E", "-S", "-Wp,", "-x", "@", "-flto")
"""Options that make gcc write other files than the object, or do something other than compile C to an object."""


def cacheable(args: list[str]) -> tuple[str, list[str]] | None:
    """``(output, args without "-o OUTPUT")`` for a plain one-file compile to an object, else None."""
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
    return out, rest


def _key(real: str, rest: list[str]) -> str | None:
    """The cache key, or None when the preprocessor fails (the real compile then reports the error)."""
    exe = shutil.which(real)
    if exe is None:
        return None
    st = os.stat(exe)
    # -fno-working-directory: with -g, gcc records the current directory in the preprocessed output; leave it out
    pre = subprocess.run([exe, *[a for a in rest if a != "-c"], "-E", "-fno-working-directory"], capture_output=True)
    if pre.returncode != 0:
        return None
    h = hashlib.sha256()
    for part in (os.path.realpath(exe), str(st.st_size), str(st.st_mtime_ns), *rest):
        h.update(part.encode() + b"\0")
    h.update(pre.stdout)
    return h.hexdigest()


def _copy_atomically(src: str, dst: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dst) or ".", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        os.unlink(tmp)
        raise


def main(args: list[str]) -> int:
    real = os.environ.get("MCC_TEST_CC_REAL") or "cc"
    cache = os.environ.get("MCC_TEST_CC_CACHE")
    plan = cacheable(args) if cache and os.path.isdir(cache) else None
    key = _key(real, plan[1]) if plan else None
    if plan is None or key is None or cache is None:
        os.execvp(real, [real, *args])
    out = plan[0]
    hit = os.path.join(cache, key + ".o")
    if os.path.isfile(hit):
        _copy_atomically(hit, out)
        _log(cache, "hit", out, 0.0)
        return 0
    t0 = time.monotonic()
    r = subprocess.run([real, *args], capture_output=True)
    sys.stdout.buffer.write(r.stdout)
    sys.stderr.buffer.write(r.stderr)
    if r.returncode == 0 and not r.stdout and not r.stderr:
        _copy_atomically(out, hit)
    _log(cache, "miss", out, time.monotonic() - t0)
    return r.returncode


def _log(cache: str, what: str, out: str, seconds: float) -> None:
    """One line per cached-or-cacheable compile in ``CACHE/log`` (the session's hit rate: ``sort | uniq -c``)."""
    with open(os.path.join(cache, "log"), "a") as f:
        f.write(f"{what} {seconds:.2f} {os.path.basename(out)}\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
