"""The test session's compile cache (tests/cc_cache.py): a hit only for the same compiler, flags and preprocessed
source; failing or warning compiles are never stored; links and other invocations run the compiler unchanged."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cc_cache import cacheable

WRAPPER = Path(__file__).resolve().parent / "cc_cache.py"
pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no host C compiler (cc)")


def test_only_a_one_file_compile_to_an_object_is_cacheable():
    plan = cacheable(["-O2", "-I", "inc", "-c", "a.c", "-o", "b/a.o"])
    assert plan is not None and (plan.out, plan.rest, plan.aux) == ("b/a.o", ["-O2", "-I", "inc", "-c", "a.c"], [])
    plan = cacheable(["-c", "/p/a.c", "-o", "/p/o/a.o", "-fstack-usage", "-fcallgraph-info=su"])
    assert plan is not None and plan.srcdir == "/p" and plan.aux == ["/p/o/a.ci", "/p/o/a.su"]
    assert cacheable(["-O2", "a.o", "b.o", "-o", "run"]) is None  # a link
    assert cacheable(["-c", "a.c", "b.c", "-o", "x.o"]) is None
    assert cacheable(["-c", "a.c", "-o", "a.o", "-MMD"]) is None  # writes a.d too
    assert cacheable(["-shared", "-fPIC", "-o", "p.so", "p.c"]) is None


def _cc(cache: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MCC_TEST_CC_CACHE": str(cache), "MCC_TEST_CC_REAL": "cc"}
    return subprocess.run([sys.executable, str(WRAPPER), *args], cwd=cwd, env=env, capture_output=True, text=True)


def _log(cache: Path) -> list[str]:
    return [line.split()[0] for line in (cache / "log").read_text().splitlines()]


def test_hits_are_identical_and_every_change_is_a_miss(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        (d / "k.h").write_text("#define K 3\n")
        (d / "k.c").write_text('#include "k.h"\nint k(int x) { return x * K; }\n')
    flags = ["-std=c99", "-Wall", "-Werror", "-O2", "-g", "-c", "k.c", "-o", "k.o"]
    assert _cc(cache, a, *flags).returncode == 0
    assert _cc(cache, b, *flags).returncode == 0  # another directory, same translation unit
    assert (a / "k.o").read_bytes() == (b / "k.o").read_bytes()
    assert _log(cache) == ["miss", "hit"]
    (b / "k.h").write_text("#define K 4\n")  # a header changes
    assert _cc(cache, b, *flags).returncode == 0
    assert _cc(cache, b, *flags[:3], "-O1", *flags[4:]).returncode == 0  # a flag changes
    assert _log(cache) == ["miss", "hit", "miss", "miss"]
    assert (a / "k.o").read_bytes() != (b / "k.o").read_bytes()


def test_stack_usage_files_name_their_own_project(tmp_path):
    """Absolute sources (the emulation builds): the .su/.ci files of a hit name the directory of its own source."""
    cache = tmp_path / "cache"
    cache.mkdir()
    for d in (tmp_path / "a", tmp_path / "b"):
        d.mkdir()
        (d / "k.c").write_text("static int g(int x) { return x + 1; }\nint k(int x) { return g(x) * 3; }\n")
        r = _cc(cache, tmp_path, "-O0", "-fstack-usage", "-fcallgraph-info=su", "-c", str(d / "k.c"), "-o",
                str(d / "k.o"))
        assert r.returncode == 0, r.stderr
        assert f"{d}/k.c" in (d / "k.su").read_text() and f"{d}/k.c" in (d / "k.ci").read_text()
        assert str(tmp_path / "a") not in (d / "k.su").read_text().replace(f"{d}/", "")
    assert _log(cache) == ["miss", "hit"]


def test_two_workers_compiling_the_same_unit_at_once_compile_it_once(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    env = {**os.environ, "MCC_TEST_CC_CACHE": str(cache), "MCC_TEST_CC_REAL": "cc"}
    procs = []
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "k.c").write_text("int k(int x) { return x * 3; }\n")
        procs.append(subprocess.Popen([sys.executable, str(WRAPPER), "-O2", "-c", "k.c", "-o", "k.o"],
                                      cwd=tmp_path / d, env=env))
    assert [p.wait() for p in procs] == [0, 0]
    assert sorted(_log(cache)) == ["hit", "miss"]


def test_a_warning_under_werror_fails_every_time(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (tmp_path / "w.c").write_text("int f(int x) { int unused; return x; }\n")
    for _ in range(2):
        r = _cc(cache, tmp_path, "-Wall", "-Werror", "-c", "w.c", "-o", "w.o")
        assert r.returncode != 0 and "unused" in r.stderr
    assert _log(cache) == ["miss", "miss"] and not list(cache.glob("*.o"))
