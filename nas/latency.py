"""The latency model: instructions per kernel op as a linear function of its size, fitted to emulated Cortex-M runs.

Every kernel op gets a *key* (its kind, refined where the kernels differ: 1x1 vs k x k convolutions, the depthwise
kernel size, stride 2 and MCUNet's in-place depthwise kernel) and six size features: MACs, valid MACs (those whose
window tap falls inside the input, not on padding: the kernels skip the others), output elements, input (activation
operand) elements, output pixels (the result's H x W, 1 for flat results) and output channels. For each key::

    instructions ≈ a * MACs + b * valid MACs + c * outputs + d * inputs + e * pixels + f * channels + g

:func:`fit` finds the four constants per key by least squares over measured layers (``mcc bench --json``'s
per-layer instruction counts, see ``bench/fit_latency.py``); keys with too few distinct layers fall back to their
op kind's fit, then to the ``"*"`` fit over all layers. :func:`evaluate` measures the relative error of the
predicted total per network.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compiler.analysis import op_macs
from compiler.ir import Graph, Op

FREE_KINDS = frozenset({"const", "nn.reshape", "nn.flatten", "nn.identity"})
"""Ops that run no code (constants and aliases)."""

MIN_LAYERS = 12
"""A key needs this many measured layers of at least two distinct sizes to get its own constants."""

Coef = tuple[float, ...]
"""Per feature (:data:`FEATURES`) and a constant per call."""

FEATURES = ("macs", "valid_macs", "outputs", "inputs", "pixels", "channels")


def op_key(op: Op) -> str:
    """The kind of ``op``, refined where its kernels differ in cost per MAC."""
    k = op.kind
    attrs: dict[str, Any] = op.attrs
    s2 = "/s2" if tuple(attrs.get("strides", (1, 1))) != (1, 1) else ""
    if k == "nn.conv2d" and len(op.operands) > 1:
        kh, kw = op.operands[1].type.shape[1:3]
        return f"{k}/1x1" if (kh, kw) == (1, 1) and not s2 else f"{k}/kxk{s2}"
    if k == "nn.depthwise_conv2d" and len(op.operands) > 1:
        kh = op.operands[1].type.shape[1]
        return k + ("/in_place" if op.attrs.get("in_place") else "") + f"/k{kh}{s2}"
    return k


def _valid_taps(size: int, out: int, k: int, stride: int, pad: int, dilation: int) -> int:
    """Window taps inside the input along one axis, summed over the output positions."""
    return sum(1 for o in range(out) for t in range(k) if 0 <= o * stride - pad + t * dilation < size)


def valid_macs(op: Op) -> int:
    """MACs whose window tap lies inside the input (convolutions and depthwise; every MAC for other ops). The
    padding is read as (top, left, bottom, right)."""
    macs = op_macs(op)
    if op.kind not in ("nn.conv2d", "nn.depthwise_conv2d") or not macs:
        return macs
    _, ih, iw, _ = op.operands[0].type.shape
    _, oh, ow, _ = op.results[0].type.shape
    kh, kw = op.operands[1].type.shape[1:3]
    attrs: dict[str, Any] = op.attrs
    sh, sw = (int(v) for v in attrs.get("strides", (1, 1)))
    dh, dw = (int(v) for v in attrs.get("dilations", (1, 1)))
    top, left = (int(v) for v in tuple(attrs.get("pads", (0, 0, 0, 0)))[:2])
    inside = _valid_taps(ih, oh, kh, sh, top, dh) * _valid_taps(iw, ow, kw, sw, left, dw)
    return macs * inside // (oh * kh * ow * kw)


def op_features(op: Op) -> tuple[int, ...]:
    """:data:`FEATURES` of one kernel op."""
    outs = sum(r.type.num_elements for r in op.results)
    ins = sum(v.type.num_elements for v in op.operands if v.producer is None or v.producer.kind != "const")
    shape = op.results[0].type.shape if op.results else ()
    pixels = shape[1] * shape[2] if len(shape) == 4 else 1
    channels = shape[-1] if shape else 1
    return op_macs(op), valid_macs(op), outs, ins, pixels, channels


def predict(coef: Coef, features: Sequence[int]) -> float:
    """Instructions for ``features`` under ``coef``."""
    return sum(c * x for c, x in zip(coef, features, strict=False)) + coef[-1]


def _parents(key: str) -> list[str]:
    """``key``, its coarser forms, then ``"*"``: ``nn.depthwise_conv2d/in_place/k3`` → … → ``nn.depthwise_conv2d``."""
    parts = key.split("/")
    return ["/".join(parts[:i]) for i in range(len(parts), 0, -1)] + ["*"]


@dataclass(frozen=True)
class LatencyModel:
    """Fitted (or default) constants per op key; ``fitted`` says on what, ``accuracy`` how well it predicts."""

    coef: dict[str, Coef]
    fitted: str = ""
    accuracy: dict[str, Any] | None = None

    def coefficients(self, key: str) -> Coef:
        """The constants used for ``key`` (the most specific key present)."""
        for k in _parents(key):
            if k in self.coef:
                return self.coef[k]
        raise KeyError(f"latency model has no {key!r} and no '*' entry")

    def op_instructions(self, op: Op) -> float:
        """Estimated instructions of one kernel op."""
        return predict(self.coefficients(op_key(op)), op_features(op))

    def estimate(self, graph: Graph) -> float:
        """Estimated instructions of one inference of ``graph`` (constants and aliases cost nothing)."""
        return sum(self.op_instructions(op) for op in graph.ops if op.kind not in FREE_KINDS)

    def to_json(self) -> str:
        """The constants as JSON."""
        return json.dumps({"coef": {k: list(v) for k, v in sorted(self.coef.items())}, "fitted": self.fitted,
                           "accuracy": self.accuracy}, indent=1) + "\n"

    @staticmethod
    def from_json(text: str) -> LatencyModel:
        """Read :meth:`to_json`'s output."""
        d = json.loads(text)
        coef = {k: tuple(float(x) for x in v) for k, v in d["coef"].items()}
        return LatencyModel(coef, d.get("fitted", ""), d.get("accuracy"))


DEFAULT_LATENCY = LatencyModel(
    {"*": (4.0, 0.0, 20.0, 0.0, 0.0, 0.0, 300.0), "nn.conv2d": (4.0, 0.0, 30.0, 0.0, 0.0, 0.0, 300.0),
     "nn.depthwise_conv2d": (6.0, 0.0, 20.0, 0.0, 0.0, 0.0, 300.0),
     "nn.fully_connected": (3.0, 0.0, 20.0, 0.0, 0.0, 0.0, 300.0), "nn.mean": (3.0, 0.0, 20.0, 0.0, 0.0, 0.0, 300.0)})
"""Unfitted guesses, used only when :data:`LATENCY_FILE` is missing."""

LATENCY_FILE = Path(__file__).with_name("latency_cortex_m7.json")
"""The fitted Cortex-M7 constants (written by ``bench/fit_latency.py``)."""


_LOADED: dict[tuple[str, float], LatencyModel] = {}


def latency_model() -> LatencyModel:
    """The fitted Cortex-M7 model when :data:`LATENCY_FILE` exists, else :data:`DEFAULT_LATENCY` (read once per
    version of the file)."""
    try:
        key = (str(LATENCY_FILE), LATENCY_FILE.stat().st_mtime)
    except OSError:
        return DEFAULT_LATENCY
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = LatencyModel.from_json(LATENCY_FILE.read_text())
    return _LOADED[key]


@dataclass(frozen=True)
class Sample:
    """One measured layer: which network it belongs to, its key and features, and its instructions."""

    net: int
    key: str
    features: tuple[int, ...]
    """:func:`op_features`."""
    instructions: float

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {"net": self.net, "key": self.key, "features": list(self.features), "instructions": self.instructions}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Sample:
        """The inverse of :meth:`to_dict`."""
        return Sample(int(d["net"]), str(d["key"]), tuple(int(x) for x in d["features"]), float(d["instructions"]))


def _lstsq(rows: Sequence[Sample]) -> Coef:
    x = np.array([[*s.features, 1.0] for s in rows], dtype=np.float64)
    y = np.array([s.instructions for s in rows], dtype=np.float64)
    scale = np.maximum(np.abs(x).max(axis=0), 1.0)  # equilibrate the columns (MACs dwarf the constant)
    sol, *_ = np.linalg.lstsq(x / scale, y, rcond=None)
    return tuple(float(v) for v in sol / scale)


def fit(samples: Iterable[Sample], description: str = "") -> LatencyModel:
    """Least-squares constants for every key (and every coarser form of it, and ``"*"``) with at least
    :data:`MIN_LAYERS` measured layers of two or more distinct sizes."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        for k in _parents(s.key):
            groups.setdefault(k, []).append(s)
    coef = {k: _lstsq(rows) for k, rows in groups.items()
            if len(rows) >= MIN_LAYERS and len({s.features for s in rows}) >= 2}
    if "*" not in coef:
        raise ValueError(f"too few measured layers to fit a latency model ({len(groups.get('*', []))})")
    return LatencyModel(coef, description)


def evaluate(model: LatencyModel, samples: Iterable[Sample]) -> dict[str, float]:
    """Relative error of the predicted total instructions per network: mean and max of ``|pred - true| / true``,
    and the same per layer (layers of 1,000 instructions or more)."""
    true: dict[int, float] = {}
    pred: dict[int, float] = {}
    layer_err = []
    for s in samples:
        p = predict(model.coefficients(s.key), s.features)
        true[s.net] = true.get(s.net, 0.0) + s.instructions
        pred[s.net] = pred.get(s.net, 0.0) + p
        if s.instructions >= 1000:
            layer_err.append(abs(p - s.instructions) / s.instructions)
    err = [abs(pred[n] - true[n]) / true[n] for n in true]
    if not err:
        raise ValueError("no samples to evaluate")
    return {"networks": len(err), "mean_rel_error": float(np.mean(err)), "max_rel_error": float(np.max(err)),
            "layer_mean_rel_error": float(np.mean(layer_err)) if layer_err else 0.0,
            "layer_max_rel_error": float(np.max(layer_err)) if layer_err else 0.0}
