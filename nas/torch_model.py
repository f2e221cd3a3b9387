"""An :class:`~nas.space.Arch` as a PyTorch module (for training) and as ONNX (for ``mcc``).

The module has the graph of :func:`nas.build.to_graph` in float: convolutions with BatchNorm, ReLU6 or hard-swish,
SE as global pool → 1x1 conv → ReLU → 1x1 conv → hard-sigmoid → multiply, residual adds, and a head of a 1x1
convolution, global average pooling and a linear classifier. PyTorch is imported only when a module is built, so
``nas`` works without it; :func:`require_torch` names the missing package in one line.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from compiler.errors import MccError
from nas.space import Arch, MBConv


def require_torch() -> Any:
    """The ``torch`` module, or an :class:`MccError` saying how to install it."""
    try:
        import torch
    except ImportError:
        raise MccError("this needs PyTorch, which is not installed (pip install 'mcc[demo]' or torch)") from None
    return torch


def to_module(arch: Arch) -> Any:
    """A ``torch.nn.Module`` computing ``arch`` on NCHW float images of ``arch.resolution`` pixels."""
    torch = require_torch()
    nn = torch.nn

    def conv_bn(c_in: int, c_out: int, k: int, stride: int, groups: int = 1, act: str | None = "relu6") -> Any:
        layers: list[Any] = [nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
                             nn.BatchNorm2d(c_out)]
        if act == "relu6":
            layers.append(nn.ReLU6())
        elif act == "hswish":
            layers.append(nn.Hardswish())
        return nn.Sequential(*layers)

    class SqueezeExcite(nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self, c: int, mid: int) -> None:
            super().__init__()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.reduce = nn.Conv2d(c, mid, 1)
            self.relu = nn.ReLU()
            self.expand = nn.Conv2d(mid, c, 1)
            self.gate = nn.Hardsigmoid()

        def forward(self, x: Any) -> Any:
            return x * self.gate(self.expand(self.relu(self.reduce(self.pool(x)))))

    class InvertedResidual(nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self, b: MBConv) -> None:
            super().__init__()
            act = "hswish" if b.hswish else "relu6"
            layers: list[Any] = []
            if b.has_expand:
                layers.append(conv_bn(b.c_in, b.mid, 1, 1, act=act))
            layers.append(conv_bn(b.mid, b.mid, b.kernel, b.stride, groups=b.mid, act=act))
            if b.se:
                layers.append(SqueezeExcite(b.mid, b.se_channels))
            layers.append(conv_bn(b.mid, b.c_out, 1, 1, act=None))
            self.body = nn.Sequential(*layers)
            self.residual = b.residual

        def forward(self, x: Any) -> Any:
            y = self.body(x)
            return x + y if self.residual else y

    class Net(nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.arch = arch
            self.stem = conv_bn(arch.in_channels, arch.channels(arch.stem_width), 3, arch.stem_stride)
            self.blocks = nn.Sequential(*(InvertedResidual(b) for b in arch.blocks()))
            self.head = conv_bn(arch.last_channels, arch.head_channels, 1, 1)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Linear(arch.head_channels, arch.num_classes)

        def forward(self, x: Any) -> Any:
            y = self.pool(self.head(self.blocks(self.stem(x))))
            return self.classifier(torch.flatten(y, 1))

    return Net()


def export_onnx(arch: Arch, path: Path, module: Any | None = None, opset: int = 17) -> Path:
    """Write ``module`` (default: a freshly initialised :func:`to_module`) as float ONNX in eval mode, input
    ``image`` of shape ``[1, C, r, r]`` and output ``logits``: what ``mcc`` compiles (with calibration data)."""
    torch = require_torch()
    model = (module if module is not None else to_module(arch)).eval()
    x = torch.zeros(1, arch.in_channels, arch.resolution, arch.resolution)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice: it is what we want
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=opset, input_names=["image"],
                          output_names=["logits"])
    return path
