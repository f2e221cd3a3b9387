"""The end-to-end demo: train a small CNN on Fashion-MNIST, export ONNX, compile it to int8 C with mcc, run the C.

1. trains a small CNN with PyTorch on the CPU (a couple of minutes at most),
2. exports it to ONNX and measures its float accuracy with onnxruntime on the 10,000 test images,
3. compiles it with ``mcc -O3 --target cortex-m7`` using 512 training images for calibration,
4. builds the generated C for the host, runs it on the 10,000 test images (``mcc run``) and prints the int8
   accuracy with peak SRAM, flash and MACs from the compiler's report.

Data: Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run as a script from a checkout: the repository's packages first

from nas.data import FASHION_MNIST as DATA  # noqa: E402
from nas.data import load_fashion_split  # noqa: E402


def load_split(kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Images as float32 [N, 1, 28, 28] in [0, 1] and labels as int64 (``nas.data``, shared with ``mcc-nas``)."""
    return load_fashion_split(kind, DATA)


def train(x: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> object:
    """Train the CNN; returns the model in eval mode."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1, groups=32), nn.ReLU6(),
        nn.Conv2d(32, 64, 1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(64, 10),
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=epochs * (len(x) // 128 + 1))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(xt))
        start, total = time.time(), 0.0
        for i in range(0, len(xt), 128):
            idx = perm[i:i + 128]
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        print(f"  epoch {epoch + 1}/{epochs}: loss {total / len(xt):.4f} ({time.time() - start:.0f} s)")
    return model.eval()


def main() -> int:
    """Run the demo; exit status 0 when int8 accuracy is within 1 point of float."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--out", type=Path, default=HERE.parent / "build" / "fashion_mnist")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"demo: {DATA} not found; install it with: apt-get install dataset-fashion-mnist", file=sys.stderr)
        return 2
    import onnxruntime as ort
    import torch

    args.out.mkdir(parents=True, exist_ok=True)
    x_train, y_train = load_split("train")
    x_test, y_test = load_split("t10k")
    print(f"1. training a small CNN on Fashion-MNIST ({len(x_train):,} images, {args.epochs} epochs, CPU)")
    t0 = time.time()
    model = train(x_train, y_train, args.epochs, args.seed)
    print(f"   trained in {time.time() - t0:.0f} s")

    onnx_path = args.out / "fashion_cnn.onnx"
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # the TorchScript exporter is what we want here
    torch.onnx.export(model, (torch.zeros(1, 1, 28, 28),), str(onnx_path), dynamo=False, opset_version=17,
                      input_names=["image"], output_names=["logits"])
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    float_logits = np.concatenate([sess.run(None, {"image": x_test[i:i + 1]})[0] for i in range(len(x_test))])
    float_acc = float(np.mean(float_logits.argmax(1) == y_test))
    print(f"2. exported {onnx_path.name}; float accuracy (onnxruntime) {100 * float_acc:.2f}%")

    cal_path = args.out / "calibration.npy"
    rng = np.random.default_rng(args.seed)
    np.save(cal_path, x_train[rng.choice(len(x_train), 512, replace=False)])
    c_dir = args.out / "c"
    mcc = [sys.executable, "-m", "compiler.cli"]
    print(f"3. mcc {onnx_path.name} -O3 --target cortex-m7 --calibration {cal_path.name} -o {c_dir}")
    subprocess.run([*mcc, str(onnx_path), "-O3", "--target", "cortex-m7", "--calibration", str(cal_path),
                    "-o", str(c_dir)], check=True)

    test_in, test_out = args.out / "test_images.npy", args.out / "test_logits.npy"
    np.save(test_in, x_test)
    print(f"4. mcc run {c_dir} on the {len(x_test):,} test images (host build of the generated C)")
    subprocess.run([*mcc, "run", str(c_dir), "--input", str(test_in), "--output", str(test_out)], check=True)
    int8_logits = np.load(test_out)
    int8_acc = float(np.mean(int8_logits.reshape(len(x_test), -1).argmax(1) == y_test))

    report = json.loads((c_dir / "report.json").read_text())
    print("\nresult")
    print(f"  float accuracy (onnxruntime)   {100 * float_acc:6.2f}%")
    print(f"  int8 accuracy (generated C)    {100 * int8_acc:6.2f}%   ({100 * (int8_acc - float_acc):+.2f} points)")
    print(f"  peak SRAM                      {report['peak_sram_bytes']:,} B (arena {report['arena_bytes']:,} B)")
    print(f"  flash (weights + tables)       {report['flash_bytes']:,} B")
    print(f"  MACs per inference             {report['macs']:,}")
    ok = abs(int8_acc - float_acc) <= 0.01
    print(f"  int8 within 1 point of float:  {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
