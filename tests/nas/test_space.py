"""The search space: sampling, mutation, crossover, JSON, the IR graph and the PyTorch module."""

from __future__ import annotations

import importlib.util
import itertools
import random
from dataclasses import replace

import pytest

from compiler.verifier import verify
from nas.build import to_graph
from nas.space import Arch, SpaceError, make_divisible, mobile_space, small_space

HAVE_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="PyTorch is not installed (pip install 'mcc[demo]')")


def test_make_divisible() -> None:
    assert [make_divisible(v) for v in (3, 8, 12, 20, 24 * 0.35, 320 * 0.3)] == [8, 8, 16, 24, 8, 96]


@pytest.mark.parametrize("make", [small_space, mobile_space])
def test_sample_mutate_crossover_stay_in_space(make) -> None:
    space = make()
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(40)]
    assert len({a.to_json() for a in archs}) == 40
    for a in archs:
        assert space.contains(a)
        assert all(d in space.depths for d in a.depths)
    kids = [space.mutate(a, rng, prob=0.5) for a in archs] + \
        [space.crossover(a, b, rng) for a, b in itertools.pairwise(archs)]
    for k in kids:
        assert space.contains(k), k.describe()
    assert any(k != a for k, a in zip(kids, archs, strict=False))
    assert space.mutate(archs[0], rng, prob=0.0) == archs[0]


def test_sampling_is_seeded_and_uniform_enough() -> None:
    space = small_space()
    a = [space.sample(random.Random(7)).to_json() for _ in range(2)]
    assert a[0] == a[1]
    rng = random.Random(1)
    kernels = [b.kernel for _ in range(300) for st in space.sample(rng).stages for b in st.blocks]
    for k in space.kernels:
        assert 0.25 < kernels.count(k) / len(kernels) < 0.42


def test_json_round_trip_and_errors() -> None:
    arch = mobile_space().sample(random.Random(3))
    assert Arch.from_json(arch.to_json()) == arch
    with pytest.raises(SpaceError):
        Arch.from_json("[1, 2]")
    with pytest.raises(SpaceError):
        Arch.from_json('{"resolution": 32}')
    bad = arch.to_dict() | {"stem_stride": 3}
    with pytest.raises(SpaceError):
        Arch.from_dict(bad)


def test_space_rejects_empty_choices() -> None:
    with pytest.raises(SpaceError):
        replace(small_space(), kernels=())


def test_largest_is_biggest() -> None:
    space = small_space()
    big = space.largest()
    assert space.contains(big) and big.depths == (4,) * len(space.stages)


@pytest.mark.parametrize("seed", range(4))
def test_ir_graph_verifies(seed: int) -> None:
    arch = small_space().sample(random.Random(seed))
    g = to_graph(arch)
    verify(g)
    assert g.inputs[0].type.shape == (1, arch.resolution, arch.resolution, 1)
    assert g.outputs[0].type.shape == (1, 10)
    kinds = {op.kind for op in g.ops}
    assert {"nn.conv2d", "nn.depthwise_conv2d", "nn.mean", "nn.fully_connected"} <= kinds
    has_se = any(st.se for st in arch.stages)
    assert ("nn.hard_sigmoid" in kinds) == has_se
    assert ("nn.hard_swish" in kinds) == any(st.hswish for st in arch.stages)


@needs_torch
@pytest.mark.parametrize("seed", range(3))
def test_torch_module_matches_ir_shapes(seed: int) -> None:
    import torch

    from nas.torch_model import to_module

    arch = replace(small_space(), num_classes=7, in_channels=3).sample(random.Random(seed))
    g = to_graph(arch)
    model = to_module(arch).eval()
    y = model(torch.zeros(2, 3, arch.resolution, arch.resolution))
    assert tuple(y.shape) == (2, 7) and g.outputs[0].type.shape == (1, 7)
    # every conv of the IR is a conv of the module, with the same weight shape (OHWI vs OIHW)
    ir = sorted(op.operands[1].type.shape for op in g.ops if op.kind == "nn.conv2d")
    pt = sorted(tuple(m.weight.shape[i] for i in (0, 2, 3, 1)) for m in model.modules()
                if isinstance(m, torch.nn.Conv2d) and m.groups == 1)
    assert ir == pt
    n_dw = sum(op.kind == "nn.depthwise_conv2d" for op in g.ops)
    assert n_dw == sum(isinstance(m, torch.nn.Conv2d) and m.groups > 1 for m in model.modules())


def test_no_two_layers_share_weights() -> None:
    """The C lowering stores equal constant arrays once; a trained network has no two equal layers, so the IR's
    random weights must differ between layers of the same shape, or its flash would come out too small."""
    arch = small_space().at(28, 0.5).largest()  # four blocks per stage: many layers of equal shape
    arrays = [op.result.const_value for op in to_graph(arch).ops if op.kind == "const"]
    by_shape: dict[tuple[int, ...], list] = {}
    for a in arrays:
        by_shape.setdefault(a.shape, []).append(a.tobytes())
    repeated = [v for v in by_shape.values() if len(v) > 1]
    assert repeated  # the check below has something to compare
    for blobs in repeated:
        assert len(set(blobs)) == len(blobs)
