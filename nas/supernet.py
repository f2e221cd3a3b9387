"""The one-shot supernet: every subnet of a (resolution, width) space in one PyTorch module, with shared weights.

Each inverted-residual position of the deepest network holds the largest tensors of its block (expansion channels
``c_in * max(expands)``, depthwise kernel ``max(kernels)``); a subnet uses the first ``c_in * e`` channels of the
expansion and projection weights, the centred ``k x k`` window of the depthwise kernel, and the first ``d`` blocks of
each stage (OFA's elastic kernel, width and depth, without the kernel transform). BatchNorm parameters and running
statistics are sliced the same way. Training samples one path uniformly per step (SPOS, Guo et al. 2020).

:meth:`SuperNet.extract` copies a subnet's slices into the standalone :func:`nas.torch_model.to_module` network, so
what the search evaluates, trains further and exports is the ordinary module; ``tests/nas/test_supernet.py`` checks
that both compute the same outputs. Under ``torch.distributed`` (DDP) BatchNorm statistics are computed over the
global batch (all-reduced, differentiable, like ``SyncBatchNorm``), so N processes train as one process does.

SE is not elastic here: the supernet needs a space without SE (hard-swish per stage is fine: it has no weights).
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from compiler.errors import MccError
from nas.space import Arch, MBConv, Space
from nas.torch_model import require_torch, to_module

torch = require_torch()
nn = torch.nn
F = torch.nn.functional


def supernet_space(space: Space) -> Space:
    """``space`` restricted to what the supernet shares: one resolution and width (the first of each), no SE."""
    return replace(space, resolutions=space.resolutions[:1], width_mults=space.width_mults[:1], se=(False,))


def _dist_world() -> int:
    d = torch.distributed
    return d.get_world_size() if d.is_available() and d.is_initialized() else 1


class SlicedBN(nn.Module):  # type: ignore[misc,name-defined]
    """BatchNorm over the first ``n`` of ``channels`` channels; batch statistics all-reduced under DDP."""

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float | None = 0.1) -> None:
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))  # BatchNorm2d's keys

    def forward(self, x: Any) -> Any:
        """Normalise ``x`` (its channel count selects the slice)."""
        n = x.shape[1]
        w, b = self.weight[:n], self.bias[:n]
        if not self.training:
            return F.batch_norm(x, self.running_mean[:n], self.running_var[:n], w, b, False, 0.0, self.eps)
        world = _dist_world()
        if world == 1:  # PyTorch's kernel (faster); the same statistics as below up to summation order
            self.num_batches_tracked += 1
            m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            return F.batch_norm(x, self.running_mean[:n], self.running_var[:n], w, b, True, m, self.eps)
        count = x.shape[0] * x.shape[2] * x.shape[3]
        s = x.sum((0, 2, 3))
        if world > 1:
            s = _all_reduce(s)
        count *= world
        mean = s / count
        sq = ((x - mean[None, :, None, None]) ** 2).sum((0, 2, 3))
        if world > 1:
            sq = _all_reduce(sq)
        var = sq / count
        with torch.no_grad():
            self.num_batches_tracked += 1
            m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean[:n].mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var[:n].mul_(1 - m).add_(var.detach() * count / max(1, count - 1), alpha=m)
        y = (x - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        return y * w[None, :, None, None] + b[None, :, None, None]


def _all_reduce(t: Any) -> Any:
    """Differentiable sum over the processes (the backward pass sums the gradients too)."""
    import warnings

    from torch.distributed.nn.functional import all_reduce

    with warnings.catch_warnings():  # "deprecated, use _functional_collectives": a private module
        warnings.simplefilter("ignore", FutureWarning)
        return all_reduce(t)


def _act(x: Any, hswish: bool) -> Any:
    return F.hardswish(x) if hswish else F.relu6(x)


class ElasticBlock(nn.Module):  # type: ignore[misc,name-defined]
    """One inverted-residual position with its largest weights: 1x1 expansion, depthwise, 1x1 projection."""

    def __init__(self, c_in: int, c_out: int, max_mid: int, max_kernel: int, stride: int) -> None:
        super().__init__()
        self.c_in, self.c_out, self.stride, self.max_kernel = c_in, c_out, stride, max_kernel
        self.expand_w = nn.Parameter(torch.empty(max_mid, c_in, 1, 1))
        self.expand_bn = SlicedBN(max_mid)
        self.dw_w = nn.Parameter(torch.empty(max_mid, 1, max_kernel, max_kernel))
        self.dw_bn = SlicedBN(max_mid)
        self.project_w = nn.Parameter(torch.empty(c_out, max_mid, 1, 1))
        self.project_bn = SlicedBN(c_out)
        for w in (self.expand_w, self.dw_w, self.project_w):
            nn.init.kaiming_normal_(w, mode="fan_out")

    def dw_slice(self, k: int) -> Any:
        """The centred ``k x k`` window of the depthwise kernel."""
        o = (self.max_kernel - k) // 2
        return self.dw_w[:, :, o:o + k, o:o + k]

    def forward(self, x: Any, blk: MBConv) -> Any:
        """Run the block as ``blk`` (its expansion, kernel and stride) configures it."""
        m = blk.mid
        y = x
        if blk.has_expand:
            y = _act(self.expand_bn(F.conv2d(y, self.expand_w[:m])), blk.hswish)
        y = F.conv2d(y, self.dw_slice(blk.kernel)[:m].contiguous(), None, blk.stride, blk.kernel // 2, 1, m)
        y = _act(self.dw_bn(y), blk.hswish)
        y = self.project_bn(F.conv2d(y, self.project_w[:, :m]))
        return x + y if blk.residual else y


class SuperNet(nn.Module):  # type: ignore[misc,name-defined]
    """All subnets of ``space`` (one resolution and width, no SE: see :func:`supernet_space`) with shared weights.

    ``forward(x, arch)`` runs the subnet ``arch``; ``extract(arch)`` returns it as a standalone module.
    """

    def __init__(self, space: Space) -> None:
        super().__init__()
        if len(space.resolutions) != 1 or len(space.width_mults) != 1:
            raise MccError("the supernet needs a space with one resolution and one width multiplier")
        if True in space.se:
            raise MccError("the supernet does not share SE layers; search a space without SE")
        self.space = space
        big = space.largest()
        self.ref = big
        # stem, the first depthwise-separable block, head and classifier are fixed: the standalone module's own
        # layers, so their state dict keys match to_module's
        whole = to_module(big)
        self.stem, self.head, self.pool, self.classifier = whole.stem, whole.head, whole.pool, whole.classifier
        self.b0 = whole.blocks[0]
        for fixed in (self.stem, self.b0, self.head):  # global statistics under DDP here too
            _replace_bn(fixed)
        max_e, max_k = max(space.expands), max(space.kernels)
        stages = []
        c_in = big.channels(big.first_width)
        for st in big.stages:
            c_out = big.channels(st.width)
            blocks = []
            for b in range(max(space.depths)):
                ci = c_in if b == 0 else c_out
                blocks.append(ElasticBlock(ci, c_out, ci * max_e, max_k, st.stride if b == 0 else 1))
            stages.append(nn.ModuleList(blocks))
            c_in = c_out
        self.stages = nn.ModuleList(stages)

    def check(self, arch: Arch) -> None:
        """Raise unless ``arch`` is a subnet of this supernet."""
        if not self.space.contains(arch):
            raise MccError(f"not a subnet of this supernet: {arch.describe()}")

    def forward(self, x: Any, arch: Arch) -> Any:
        """The logits of subnet ``arch`` on ``x``."""
        blocks = list(arch.blocks())
        y = self.b0(self.stem(x))
        i = 1
        for s, st in enumerate(arch.stages):
            for b in range(st.depth):
                y = self.stages[s][b](y, blocks[i])
                i += 1
        y = self.pool(self.head(y))
        return self.classifier(torch.flatten(y, 1))

    def active_parameters(self, arch: Arch) -> set[int]:
        """``id`` of every parameter ``arch`` uses (the others get no gradient, so optimisers skip them)."""
        used = [self.stem, self.b0, self.head, self.classifier]
        for s, st in enumerate(arch.stages):
            used.extend(self.stages[s][b] for b in range(st.depth))
        return {id(p) for m in used for p in m.parameters()}

    @torch.no_grad()  # type: ignore[untyped-decorator]
    def extract(self, arch: Arch) -> Any:
        """The standalone :func:`nas.torch_model.to_module` network of ``arch`` with this supernet's weights and
        BatchNorm statistics (copies: training it leaves the supernet unchanged)."""
        self.check(arch)
        net = to_module(arch)
        net.stem.load_state_dict(self.stem.state_dict())
        net.blocks[0].load_state_dict(self.b0.state_dict())
        net.head.load_state_dict(self.head.state_dict())
        net.classifier.load_state_dict(self.classifier.state_dict())
        blocks = list(arch.blocks())
        i = 1
        for s, st in enumerate(arch.stages):
            for b in range(st.depth):
                _copy_block(self.stages[s][b], net.blocks[i], blocks[i])
                i += 1
        return net


def _replace_bn(module: Any) -> None:
    """Swap every ``BatchNorm2d`` inside ``module`` for a :class:`SlicedBN` (same state-dict keys)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, SlicedBN(child.num_features, child.eps, child.momentum))
        else:
            _replace_bn(child)


def _copy_bn(src: SlicedBN, dst: Any, n: int) -> None:
    dst.weight.copy_(src.weight[:n])
    dst.bias.copy_(src.bias[:n])
    dst.running_mean.copy_(src.running_mean[:n])
    dst.running_var.copy_(src.running_var[:n])


def _copy_block(src: ElasticBlock, dst: Any, blk: MBConv) -> None:
    m = blk.mid
    body = list(dst.body)
    if blk.has_expand:
        exp = body.pop(0)
        exp[0].weight.copy_(src.expand_w[:m])
        _copy_bn(src.expand_bn, exp[1], m)
    dw, proj = body
    dw[0].weight.copy_(src.dw_slice(blk.kernel)[:m])
    _copy_bn(src.dw_bn, dw[1], m)
    proj[0].weight.copy_(src.project_w[:, :m])
    _copy_bn(src.project_bn, proj[1], blk.c_out)


def path_rng(seed: int, epoch: int, step: int) -> random.Random:
    """The RNG of one training step's path: the same on every DDP rank, independent of the process count."""
    return random.Random(f"spos:{seed}:{epoch}:{step}")
