"""Running a generated project on the host with arrays in the original model's shapes and dtypes (``mcc run``).

``report.json`` says, for every input and output, the shape and dtype in the model file, the permutation into the
C layout (``c_array = model_array.transpose(perm)``) and the quantization at the edge. Float inputs are quantized
the way the model's own edge quantizer does; int8 inputs are passed through; outputs come back dequantized when the
model's outputs were float.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from backends.c.build import run_host
from compiler.errors import MccError
from compiler.ir import DType
from compiler.quant import dequantize_array, quantize_array


def read_report(project: Path) -> dict[str, Any]:
    """The project's ``report.json``; a clear error when the directory is not an mcc project."""
    path = project / "report.json"
    if not path.is_file():
        raise MccError(f"{project} is not an mcc project (no report.json); create one with 'mcc MODEL -o {project}'")
    return json.loads(path.read_text())


def load_inputs(project: Path, path: Path) -> dict[str, np.ndarray]:
    """Read ``.npy`` (the first input) or ``.npz`` (by input name) into a dict keyed by input name."""
    report = read_report(project)
    names = [i["name"] for i in report["inputs"]]
    if not path.is_file():
        raise MccError(f"no such input file: {path}")
    try:
        if path.suffix == ".npz":
            with np.load(path) as data:
                missing = [n for n in names if n not in data]
                if missing:
                    raise MccError(f"{path}: missing input(s) {', '.join(missing)} (has: {', '.join(data.files)})")
                return {n: data[n] for n in names}
        arr = np.load(path, allow_pickle=False)
    except MccError:
        raise
    except Exception as e:
        raise MccError(f"cannot read {path}: {e}") from None
    if len(names) != 1:
        raise MccError(f"the model has {len(names)} inputs; pass an .npz with arrays named {', '.join(names)}")
    return {names[0]: arr}


def _batch_mode(spec: dict[str, Any], shape: tuple[int, ...]) -> str:
    """How an array relates to the model shape: one sample, a stack of samples, or samples along the batch axis."""
    model_shape = tuple(spec["model_shape"])
    if shape == model_shape:
        return "single"
    if shape[1:] == model_shape:
        return "stacked"
    if model_shape and model_shape[0] == 1 and len(shape) == len(model_shape) and shape[1:] == model_shape[1:]:
        return "merged"
    dims = ", ".join(map(str, model_shape))
    raise MccError(f"input '{spec['name']}': expected shape {list(model_shape)}, [N, {dims}] or, for a batch axis "
                   f"of 1, N samples along it; got {list(shape)}")


def _to_c(spec: dict[str, Any], arr: np.ndarray) -> tuple[np.ndarray, str]:
    arr = np.asarray(arr)
    mode = _batch_mode(spec, arr.shape)
    if mode == "single":
        batch = arr[None]
    elif mode == "stacked":
        batch = arr
    else:
        batch = arr.reshape(arr.shape[0], *spec["model_shape"])
    perm = [0, *(p + 1 for p in spec["perm"])]
    batch = batch.transpose(perm)
    c_dtype = DType(spec["dtype"])
    if DType(spec["model_dtype"]).is_float and not c_dtype.is_float:
        if not np.issubdtype(batch.dtype, np.floating):
            raise MccError(f"input '{spec['name']}': the model takes floats, got {batch.dtype}")
        q = quantize_array(batch, spec["scale"], spec["zero_point"], c_dtype.qmin, c_dtype.qmax,
                           spec.get("round_mode") or "half_away")
        return q.astype(c_dtype.np), mode
    if batch.dtype != c_dtype.np:
        raise MccError(f"input '{spec['name']}': the model takes {c_dtype.np}, got {batch.dtype}")
    return np.ascontiguousarray(batch), mode


def _from_c(spec: dict[str, Any], arr: np.ndarray) -> np.ndarray:
    inverse = np.argsort([0, *(p + 1 for p in spec["perm"])])
    out = arr.transpose(inverse)
    if DType(spec["model_dtype"]).is_float and spec["scale"] is not None:
        out = dequantize_array(out, spec["scale"], spec["zero_point"])
    return out


def to_c_batches(report: dict[str, Any], inputs: dict[str, np.ndarray]) -> tuple[list[np.ndarray], str]:
    """Convert inputs by name into the C layout and dtype, one ``[N, *c_shape]`` batch per input.

    Returns the batches and the batch mode (``single``, ``stacked`` or ``merged``) that :func:`from_c_batches`
    needs to give outputs back in the same form.
    """
    converted, modes = [], []
    for spec in report["inputs"]:
        if spec["name"] not in inputs:
            raise MccError(f"missing input '{spec['name']}'")
        arr, mode = _to_c(spec, inputs[spec["name"]])
        converted.append(arr)
        modes.append(mode)
    counts = {a.shape[0] for a in converted}
    if len(counts) > 1:
        raise MccError(f"inputs have different batch sizes: {sorted(counts)}")
    mode = "merged" if "merged" in modes else ("stacked" if "stacked" in modes else "single")
    return converted, mode


def output_specs(report: dict[str, Any]) -> list[tuple[tuple[int, ...], np.dtype]]:
    """C shape and dtype of every output, as :func:`backends.c.build.run_host` takes them."""
    return [(tuple(o["shape"]), DType(o["dtype"]).np) for o in report["outputs"]]


def from_c_batches(report: dict[str, Any], raw: list[np.ndarray], mode: str) -> dict[str, np.ndarray]:
    """Outputs by name in the model's shape and dtype from raw ``[N, *c_shape]`` C outputs."""
    outs = {}
    for spec, arr in zip(report["outputs"], raw, strict=True):
        out = _from_c(spec, arr)  # [N, *model_shape]
        model_shape = tuple(spec["model_shape"])
        if mode == "single":
            out = out[0]
        elif mode == "merged" and model_shape and model_shape[0] == 1:
            out = out.reshape(out.shape[0], *model_shape[1:])
        outs[spec["name"]] = out
    return outs


def run_project(project: Path, inputs: dict[str, np.ndarray], *, sanitize: bool = False) -> dict[str, np.ndarray]:
    """Run the project on ``inputs``; returns outputs by name.

    Each input is one sample in the model's shape, a stack ``[N, *model_shape]``, or — when the model's batch axis
    is 1 — ``N`` samples along that axis; outputs come back in the same form.
    """
    report = read_report(project)
    converted, mode = to_c_batches(report, inputs)
    raw = run_host(project, report["name"], converted, sanitize=sanitize, output_specs=output_specs(report))
    return from_c_batches(report, raw, mode)


def save_outputs(path: Path, outputs: dict[str, np.ndarray]) -> None:
    """Write the first output to ``.npy`` or all outputs to ``.npz``."""
    if path.suffix == ".npz":
        np.savez(path, *[], **outputs)  # type: ignore[arg-type]  # numpy's stub types **kwds too narrowly
    else:
        np.save(path, next(iter(outputs.values())))
