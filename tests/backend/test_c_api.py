"""The generated C API beyond the host runner: the zero-copy input (``NAME_input_X``), from a C program of our own,
under ASan/UBSan, against the interpreter."""

import subprocess

import numpy as np

from compiler.interpreter import run
from compiler.ir import Graph, const
from tests.backend.harness import compile_to_c
from tests.helpers import q8

PROGRAM = r"""
#include <stdio.h>
#include <string.h>
#include "t.h"

static uint8_t own_arena[T_ARENA_BYTES] __attribute__((aligned(8)));

/* Runs the sample on stdin three ways and writes the three outputs: (1) copied in from a buffer of our own,
   (2) written in place in the static arena, (3) written in place in a caller-owned arena. */
int main(void) {
    static int8_t image[T_INPUT_X_BYTES];
    int8_t out[3][T_OUTPUT_Y_BYTES];
    if (fread(image, 1, sizeof image, stdin) != sizeof image) {
        return 3;
    }
    if (t_input_x(NULL) == t_input_x(own_arena) || (uint8_t *)t_input_x(own_arena) != own_arena + T_INPUT_X_OFFSET) {
        return 4;
    }
    t_inputs in;
    t_outputs o;
    in.x = image;
    o.y = out[0];
    if (t_run(&in, &o, NULL) != 0) {
        return 5;
    }
    memset(t_input_x(NULL), 0x55, sizeof image); /* whatever the last run left there is overwritten */
    memcpy(t_input_x(NULL), image, sizeof image);
    in.x = t_input_x(NULL);
    o.y = out[1];
    if (t_run(&in, &o, NULL) != 0) {
        return 6;
    }
    memcpy(t_input_x(own_arena), image, sizeof image);
    in.x = t_input_x(own_arena);
    o.y = out[2];
    if (t_run(&in, &o, own_arena) != 0) {
        return 7;
    }
    fwrite(out, 1, sizeof out, stdout);
    return 0;
}
"""


def test_zero_copy_input_gives_the_copied_inputs_results(tmp_path):
    rng = np.random.default_rng(3)
    g = Graph("t")
    x = g.add_input(q8((1, 9, 7, 4), 0.05, -7), "x")
    w = const(g, rng.integers(-90, 90, (8, 3, 3, 4)).astype(np.int8), q8((8, 3, 3, 4), 0.02, 0))
    a = g.create("nn.conv2d", [x, w], [q8((1, 9, 7, 8), 0.2, 3)], {"pads": (1, 1, 1, 1)}, ["a"]).result
    g.outputs = [g.create("nn.avg_pool2d", [a], [q8((1, 1, 1, 8), 0.2, 3)], {"kernel": (9, 7)}, ["y"]).result]
    project = tmp_path / "c"
    compile_to_c(g, project)
    header = (project / "t.h").read_text()
    assert "t_input_x(uint8_t *arena)" in header and "T_INPUT_X_OFFSET" in header
    (project / "zc.c").write_text(PROGRAM)
    srcs = [str(f) for f in project.glob("*.c") if f.name != "t_main.c"]
    exe = project / "zc"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-fsanitize=address,undefined",
                    "-fno-sanitize-recover=all", "-o", str(exe), *srcs], check=True, capture_output=True)
    for _ in range(3):
        sample = rng.integers(-128, 128, (1, 9, 7, 4)).astype(np.int8)
        r = subprocess.run([str(exe)], input=sample.tobytes(), capture_output=True, check=True)
        got = np.frombuffer(r.stdout, np.int8).reshape(3, 1, 1, 1, 8)
        want = run(g, [sample])[0]
        for k in range(3):
            np.testing.assert_array_equal(got[k], want, err_msg=f"way {k + 1}")
