"""Patch-based inference: tiled stages compute exactly what per-layer inference computes, in the interpreter and
in C; the automatic choice never makes the arena larger; the options and their errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.errors import MccError
from compiler.interpreter import run
from compiler.ir import DType, Graph, QuantParams, TensorType, Value, const
from compiler.memory import plan_choosing_in_place, plan_memory
from compiler.passmanager import PassContext, PassManager, parse_pipeline
from compiler.pipelines import PatchOptions, opt_pipeline, parse_overhead
from compiler.verifier import verify
from passes.patch_stage import Region, apply_patches, input_region, stage_candidates, tiles
from tests.backend.harness import assert_c_matches_interpreter
from tests.helpers import random_input
from tests.models import model_path

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def t8(shape: tuple[int, ...], scale: float = 0.1, zp: int = 0) -> TensorType:
    return TensorType(shape, DType.INT8, QuantParams.per_tensor(scale, zp))


def out_size(n: int, k: int, s: int, d: int, p0: int, p1: int) -> int:
    return (n + p0 + p1 - (k - 1) * d - 1) // s + 1


@st.composite
def stems(draw) -> Graph:
    """Random CNN stems: conv k x k (stride 1/2, dilation, any padding), then depthwise / pooling / pointwise /
    activation / a residual add, on a 1xHxWxC int8 input."""
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    g = Graph("stem")
    h, w, c = draw(st.integers(8, 20)), draw(st.integers(8, 20)), draw(st.integers(1, 3))
    x: Value = g.add_input(t8((1, h, w, c), 0.05, -7), "x")
    for i in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["conv", "dw", "pool", "pw", "act", "res"]))
        _, h, w, c = x.type.shape
        if kind in ("conv", "dw", "pool"):
            k = draw(st.sampled_from([1, 2, 3, 5, 7]))
            s = draw(st.integers(1, 2))
            d = draw(st.integers(1, 2)) if kind != "pool" else 1
            pads = tuple(draw(st.integers(0, max(0, k // 2 + (k - 1) * (d - 1)))) for _ in range(4))
            if kind == "pool":
                pads = tuple(min(q, k - 1) for q in pads)
            oh, ow = out_size(h, k, s, d, pads[0], pads[2]), out_size(w, k, s, d, pads[1], pads[3])
            if oh < 2 or ow < 2:
                continue
            if kind == "conv":
                co = draw(st.integers(1, 6))
                wt = const(g, rng.integers(-90, 90, (co, k, k, c)).astype(np.int8), t8((co, k, k, c), 0.02))
                x = g.create("nn.conv2d", [x, wt], [t8((1, oh, ow, co), 0.2, 3)],
                             {"pads": pads, "strides": (s, s), "dilations": (d, d)}, [f"c{i}"]).result
            elif kind == "dw":
                wt = const(g, rng.integers(-90, 90, (1, k, k, c)).astype(np.int8), t8((1, k, k, c), 0.02))
                x = g.create("nn.depthwise_conv2d", [x, wt], [t8((1, oh, ow, c), 0.2, -2)],
                             {"pads": pads, "strides": (s, s), "dilations": (d, d)}, [f"d{i}"]).result
            else:
                pk = draw(st.sampled_from(["nn.avg_pool2d", "nn.max_pool2d"]))
                x = g.create(pk, [x], [x.type.with_shape((1, oh, ow, c))],
                             {"kernel": (k, k), "strides": (s, s), "pads": pads}, [f"p{i}"]).result
        elif kind == "pw":
            co = draw(st.integers(1, 6))
            wt = const(g, rng.integers(-90, 90, (co, 1, 1, c)).astype(np.int8), t8((co, 1, 1, c), 0.02))
            x = g.create("nn.conv2d", [x, wt], [t8((1, h, w, co), 0.3, 1)], {}, [f"w{i}"]).result
        elif kind == "act":
            x = g.create("nn.relu", [x], [x.type], {}, [f"r{i}"]).result
        else:  # a residual block: 3x3 depthwise (pad 1) added to its input
            wt = const(g, rng.integers(-90, 90, (1, 3, 3, c)).astype(np.int8), t8((1, 3, 3, c), 0.02))
            y = g.create("nn.depthwise_conv2d", [x, wt], [x.type], {"pads": (1, 1, 1, 1)}, [f"b{i}"]).result
            x = g.create("nn.add", [x, y], [t8(x.type.shape, 0.25, 0)], {}, [f"a{i}"]).result
    # a tail after the stage, so the stage output is consumed by per-layer ops
    _, h, w, c = x.type.shape
    wt = const(g, rng.integers(-90, 90, (4, 1, 1, c)).astype(np.int8), t8((4, 1, 1, c), 0.02))
    y = g.create("nn.conv2d", [x, wt], [t8((1, h, w, 4), 0.2, 0)], {}, ["tail"]).result
    g.outputs = [g.create("nn.avg_pool2d", [y], [y.type.with_shape((1, 1, 1, 4))], {"kernel": (h, w)},
                          ["gap"]).result]
    verify(g)
    return g


def _same_results(a: Graph, b: Graph, seed: int = 0, n: int = 2) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(n):
        x = [random_input(v, rng) for v in a.inputs]
        for p, q in zip(run(a, x), run(b, x), strict=True):
            np.testing.assert_array_equal(p, q)


@SETTINGS
@given(graph=stems(), p=st.integers(2, 4), pick=st.integers(0, 100))
def test_every_split_and_patch_count_is_bit_exact(graph, p, pick):
    stages = stage_candidates(graph)
    assert stages, "the stem's first op always forms a stage"
    stage = stages[pick % len(stages)]
    _, oh, ow, _ = stage.output.type.shape
    if p > min(oh, ow):
        return
    patched = graph.clone()
    stage2 = next(s for s in stage_candidates(patched) if len(s.ops) == len(stage.ops))
    apply_patches(patched, stage2, p)
    verify(patched)
    assert sum(op.kind == "nn.insert" for op in patched.ops) == p * p
    _same_results(graph, patched, seed=pick)


def test_tiles_cover_the_map_exactly():
    for h, w, p in [(7, 5, 3), (8, 8, 4), (3, 9, 2)]:
        seen = np.zeros((h, w), int)
        for r in tiles(h, w, p):
            seen[r.y0:r.y1, r.x0:r.x1] += 1
        assert (seen == 1).all()


def test_receptive_field_of_a_strided_conv():
    g = Graph("rf")
    x = g.add_input(t8((1, 16, 16, 1)), "x")
    wt = const(g, np.ones((1, 5, 5, 1), np.int8), t8((1, 5, 5, 1), 0.01))
    op = g.create("nn.conv2d", [x, wt], [t8((1, 8, 8, 1))], {"pads": (2, 2, 1, 1), "strides": (2, 2)}, ["y"])
    # output rows 2..4 read rows 2*2-2 .. 3*2-2+5 = 2..9; row 0 reads from the padding (clamped at 0)
    assert input_region(op, Region(2, 4, 0, 1)) == Region(2, 9, 0, 3)
    assert input_region(op, Region(7, 8, 7, 8)) == Region(12, 16, 12, 16)


@pytest.mark.parametrize("p", [2, 3])
def test_patched_stem_in_c_matches_per_layer(tmp_path, p):
    rng = np.random.default_rng(1)
    g = Graph("c")
    x = g.add_input(t8((1, 17, 15, 3), 0.05, -7), "x")
    w1 = const(g, rng.integers(-90, 90, (8, 3, 3, 3)).astype(np.int8), t8((8, 3, 3, 3), 0.02))
    a = g.create("nn.conv2d", [x, w1], [t8((1, 9, 8, 8), 0.2, 3)], {"pads": (1, 1, 1, 1), "strides": (2, 2)},
                 ["a"]).result
    w2 = const(g, rng.integers(-90, 90, (1, 5, 5, 8)).astype(np.int8), t8((1, 5, 5, 8), 0.02))
    b = g.create("nn.depthwise_conv2d", [a, w2], [t8((1, 9, 8, 8), 0.2, 1)], {"pads": (2, 2, 2, 2)}, ["b"]).result
    s = g.create("nn.add", [a, b], [t8((1, 9, 8, 8), 0.3, 0)], {}, ["s"]).result
    m = g.create("nn.max_pool2d", [s], [t8((1, 4, 3, 8), 0.3, 0)], {"kernel": (3, 3), "strides": (2, 2)},
                 ["m"]).result
    g.outputs = [m]
    verify(g)
    patched = g.clone()
    apply_patches(patched, stage_candidates(patched)[2], p)  # conv, depthwise, add; the pool runs per layer
    _same_results(g, patched, n=3)
    assert_c_matches_interpreter(patched, tmp_path, n=4, sanitize=True)


def test_instructions_per_mac_count_the_models_macs_not_the_recompute(tmp_path):
    """``mcc bench``'s instructions/MAC divide by the model's MACs: a patched program's recompute must not lower it;
    and the tiles store their layer's transformed weights once."""
    from backends.cortexm.emulate import model_macs
    from compiler.driver import compile_model
    from frontend.mir import write_file

    rng = np.random.default_rng(3)
    g = Graph("m")
    x = g.add_input(t8((1, 32, 32, 3), 0.05, -7), "x")
    w1 = const(g, rng.integers(-90, 90, (16, 3, 3, 3)).astype(np.int8), t8((16, 3, 3, 3), 0.02))
    a = g.create("nn.conv2d", [x, w1], [t8((1, 32, 32, 16), 0.2, 3)], {"pads": (1, 1, 1, 1)}, ["a"]).result
    w2 = const(g, rng.integers(-90, 90, (8, 3, 3, 16)).astype(np.int8), t8((8, 3, 3, 16), 0.02))
    b = g.create("nn.conv2d", [a, w2], [t8((1, 16, 16, 8), 0.2, 1)], {"pads": (1, 1, 1, 1), "strides": (2, 2)},
                 ["b"]).result
    g.outputs = [g.create("nn.avg_pool2d", [b], [t8((1, 1, 1, 8), 0.2, 1)], {"kernel": (16, 16)}, ["gap"]).result]
    verify(g)
    write_file(g, tmp_path / "m.mir")
    per_layer = compile_model(tmp_path / "m.mir", tmp_path / "p1", opt_level=3, patch=PatchOptions(patches=1))
    patched = compile_model(tmp_path / "m.mir", tmp_path / "p4", opt_level=3, patch=PatchOptions(patches=4))
    assert patched["patch_stage"]["patches"] == 4 and patched["macs"] > per_layer["macs"]
    assert model_macs(patched) == model_macs(per_layer) == per_layer["macs"]
    # the tiles of a layer share its packed weights and tables: patches cost no flash
    assert patched["flash_bytes"] == per_layer["flash_bytes"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=stems())
def test_automatic_choice_is_never_worse_than_per_layer(graph):
    # arenas as compilation plans them (plan-memory: in-place depthwise where it lowers the arena)
    before = plan_choosing_in_place(graph.clone()).arena_bytes
    patched = graph.clone()
    ctx = PassContext()
    changed = PassManager(parse_pipeline("patch-stage"), ctx).run(patched)
    note = ctx.notes["patch_stage"]
    assert note["per_layer_arena_bytes"] == before
    after = plan_choosing_in_place(patched.clone()).arena_bytes
    if changed:
        assert after == note["arena_bytes"] < before and note["macs"] <= 1.15 * note["per_layer_macs"]
        _same_results(graph, patched)
    else:
        assert after == before and note["patches"] == 1


def test_patches_do_not_help_when_the_peak_is_late():
    """A tiny stem feeding a wide layer: the peak is after any possible stage, so per-layer inference stays."""
    g = Graph("late")
    x = g.add_input(t8((1, 4, 4, 1)), "x")
    wt = const(g, np.ones((64, 1, 1, 1), np.int8), t8((64, 1, 1, 1), 0.01))
    y = g.create("nn.relu", [x], [x.type], {}, ["r"]).result
    z = g.create("nn.conv2d", [y, wt], [t8((1, 4, 4, 64))], {}, ["wide"]).result
    g.outputs = [g.create("nn.avg_pool2d", [z], [t8((1, 1, 1, 64))], {"kernel": (4, 4)}, ["gap"]).result]
    verify(g)
    ctx = PassContext()
    assert not PassManager(parse_pipeline("patch-stage"), ctx).run(g)
    assert ctx.notes["patch_stage"]["patches"] == 1


def test_options_and_errors():
    assert "patch-stage" not in opt_pipeline(3, PatchOptions(patches=1))
    assert "patch-stage{patches=4,split=3}" in opt_pipeline(3, PatchOptions(patches=4, split=3))
    assert "patch-stage{patches=2}" in opt_pipeline(2, PatchOptions(patches=2))
    assert parse_overhead("15%") == pytest.approx(0.15) and parse_overhead("0.1") == 0.1
    with pytest.raises(MccError, match="fraction or a percentage"):
        parse_overhead("lots")
    with pytest.raises(MccError, match="--patches must be >= 0"):
        opt_pipeline(3, PatchOptions(patches=-1))
    g = Graph("e")
    x = g.add_input(t8((1, 4, 4, 1)), "x")
    g.outputs = [g.create("nn.relu", [x], [x.type], {}, ["r"]).result]
    with pytest.raises(MccError, match="cannot form a patch stage"):
        PassManager(parse_pipeline("patch-stage{patches=2,split=5}")).run(g)


def test_mcunet_vww_fits_the_patch_target():
    """Issue 7: at most 36,000 B with the input kept, at most 15% more MACs (TinyEngine: 62,352 B)."""
    from compiler.analyze_cmd import analyze

    a = analyze(model_path("tinyengine/mcunet_vww.tflite"), opt_level=3)
    ps = a.patch_stage
    assert ps is not None and ps["patches"] >= 2
    assert a.sram_bytes == ps["arena_bytes"] <= 36_000 < ps["per_layer_arena_bytes"]
    assert a.macs == ps["macs"] <= 1.15 * ps["per_layer_macs"]


def test_streamed_input_stays_out_of_the_arena_and_the_callback_api_matches(tmp_path):
    """--stream-input: the input has no arena offset; <name>_run (regions copied from the caller's buffer) and
    <name>_run_streamed (regions from a callback) both give the per-layer results."""
    import subprocess

    from tests.backend.harness import compile_to_c, run_c

    rng = np.random.default_rng(5)
    g = Graph("s")
    x = g.add_input(t8((1, 12, 10, 2), 0.05, -7), "x")
    w1 = const(g, rng.integers(-90, 90, (4, 3, 3, 2)).astype(np.int8), t8((4, 3, 3, 2), 0.02))
    a = g.create("nn.conv2d", [x, w1], [t8((1, 12, 10, 4), 0.2, 3)], {"pads": (1, 1, 1, 1)}, ["a"]).result
    g.outputs = [g.create("nn.avg_pool2d", [a], [t8((1, 1, 1, 4), 0.2, 3)], {"kernel": (12, 10)}, ["gap"]).result]
    verify(g)
    patched = g.clone()
    apply_patches(patched, stage_candidates(patched)[0], 2, stream=True)
    PassManager(parse_pipeline("plan-memory")).run(patched)
    assert patched.inputs[0].offset is None
    assert all(patched.inputs[0] not in b.values for b in plan_memory(patched).buffers)
    project = tmp_path / "c"
    compile_to_c(patched, project)
    samples = [random_input(g.inputs[0], rng) for _ in range(3)]
    want = [run(g, [s])[0] for s in samples]
    got = run_c(project, patched, [np.stack(samples)], sanitize=True)[0]
    for k in range(3):
        np.testing.assert_array_equal(got[k], want[k])
    # the callback API, from a C program of our own
    (project / "cb.c").write_text(
        '#include <stdio.h>\n#include <string.h>\n#include "t.h"\n'
        "static int8_t image[12 * 10 * 2];\nstatic int calls;\n"
        "static void reader(void *user, int32_t y, int32_t x, int32_t h, int32_t w, void *dst) {\n"
        "    (void)user;\n    ++calls;\n"
        "    for (int32_t r = 0; r < h; ++r) {\n"
        "        memcpy((int8_t *)dst + r * w * 2, image + ((y + r) * 10 + x) * 2, (size_t)(w * 2));\n    }\n}\n"
        "int main(void) {\n    int8_t out[4];\n    t_outputs o;\n    o.gap = out;\n"
        "    if (fread(image, 1, sizeof image, stdin) != sizeof image) {\n        return 3;\n    }\n"
        "    if (t_run_streamed(reader, NULL, &o, NULL) != 0) {\n        return 4;\n    }\n"
        "    fwrite(out, 1, 4, stdout);\n    fprintf(stderr, \"%d\", calls);\n    return 0;\n}\n")
    srcs = [str(f) for f in project.glob("*.c") if f.name not in ("t_main.c",)]
    exe = project / "cb"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-fsanitize=address,undefined", "-o",
                    str(exe), *srcs], check=True, capture_output=True, cwd=project)
    for k, s in enumerate(samples):
        r = subprocess.run([str(exe)], input=s.tobytes(), capture_output=True, check=True)
        np.testing.assert_array_equal(np.frombuffer(r.stdout, np.int8).reshape(want[k].shape), want[k])
        assert r.stderr == b"4"  # one region per patch
