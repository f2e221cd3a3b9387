"""Exhaustive check: ``mcc_expf``/``mcc_logf`` (runtime_c/mcc_float.c) against this machine's glibc on all 2^32 floats.

Builds a small C program with the runtime file (``-std=c99 -O2 -ffp-contract=off``, as generated projects are
built) linked against libm, and for every 32-bit pattern compares the bits of ``mcc_expf(x)`` with glibc's
``expf(x)`` and of ``mcc_logf(x)`` with ``logf(x)`` (two NaN results count as equal: NaN payloads are not
reproduced). It also counts where glibc differs from the double-precision exp/log rounded to float, to show why a
correctly rounded implementation would not match TFLM. Both functions run in parallel; about 4 minutes on 2 cores.

    python bench/libm_exhaustive.py [--lo HEX --hi HEX]
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

HARNESS = r"""
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mcc_kernels.h"

int main(int argc, char **argv) {
    if (argc != 4) {
        return 2;
    }
    const int is_log = strcmp(argv[1], "log") == 0;
    const unsigned long lo = strtoul(argv[2], NULL, 16), hi = strtoul(argv[3], NULL, 16);
    unsigned long n = 0, differ = 0, nan = 0, not_cr = 0;
    for (unsigned long u = lo; u <= hi; ++u) {
        const unsigned bits = (unsigned)u;
        float x, g, m;
        memcpy(&x, &bits, 4);
        g = is_log ? logf(x) : expf(x);
        m = is_log ? mcc_logf(x) : mcc_expf(x);
        const float cr = (float)(is_log ? log((double)x) : exp((double)x));
        ++n;
        if (g != g && m != m) {
            ++nan;
            continue;
        }
        unsigned gb, mb, cb;
        memcpy(&gb, &g, 4);
        memcpy(&mb, &m, 4);
        memcpy(&cb, &cr, 4);
        if (gb != mb) {
            if (differ < 10) {
                printf("differs: x=%08x glibc=%a mcc=%a\n", bits, (double)g, (double)m);
            }
            ++differ;
        }
        not_cr += gb != cb;
    }
    printf("%s [%08lx, %08lx]: %lu inputs, %lu where mcc differs from glibc (%lu NaN results, equal as NaN); "
           "glibc differs from the double result rounded to float on %lu\n",
           is_log ? "logf" : "expf", lo, hi, n, differ, nan, not_cr);
    return differ != 0;
}
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lo", default="0", help="first bit pattern (hex)")
    ap.add_argument("--hi", default="ffffffff", help="last bit pattern (hex)")
    args = ap.parse_args()
    print(f"{platform.machine()}, {platform.libc_ver()[0]} {platform.libc_ver()[1]}")
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp) / "harness.c", Path(tmp) / "harness"
        src.write_text(HARNESS)
        rt = ROOT / "runtime_c"
        subprocess.run(["cc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off", "-I", str(rt),
                        str(src), str(rt / "mcc_float.c"), "-o", str(exe), "-lm"], check=True)
        procs = [subprocess.Popen([str(exe), fn, args.lo, args.hi], stdout=subprocess.PIPE, text=True)
                 for fn in ("exp", "log")]
        status = 0
        for p in procs:
            out, _ = p.communicate()
            print(out, end="")
            status |= p.returncode
    return status


if __name__ == "__main__":
    raise SystemExit(main())
