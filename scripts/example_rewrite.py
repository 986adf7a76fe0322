#!/usr/bin/env python3
"""Example: take an ordinary CNN, swap its activations for learnable PAUs with one call, train it
briefly on Fashion-MNIST, and plot what the activations learned.

    python3 scripts/example_rewrite.py [--data-dir /usr/share/datasets/fashion-mnist]
        [--train-subset 12000] [--epochs 1] [--out example_rewrite.png]

The images are the IDX files of Debian's dataset-fashion-mnist package, read with gzip + numpy.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import torch_rational


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (gzipped or not): magic 0x00 0x00 0x08 <ndim>, big-endian
    uint32 sizes, then the data."""
    if not path.is_file():
        sys.exit(f"example_rewrite: {path} not found (install Debian's dataset-fashion-mnist or pass --data-dir)")
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        sys.exit(f"example_rewrite: {path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        sys.exit(f"example_rewrite: {path} holds {body.size} values, expected {int(np.prod(dims))}")
    return body.reshape(dims)


def load(data_dir: Path, split: str, subset: int):
    x = torch.from_numpy(read_idx(data_dir / f"{split}-images-idx3-ubyte.gz").astype(np.float32) / 255.0)
    y = torch.from_numpy(read_idx(data_dir / f"{split}-labels-idx1-ubyte.gz").astype(np.int64))
    if subset:
        x, y = x[:subset], y[:subset]
    return ((x - 0.2860) / 0.3530).unsqueeze(1), y


def small_cnn() -> nn.Module:
    """An ordinary CNN, written without any knowledge of torch_rational."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.LeakyReLU(0.2), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.SiLU(), nn.Linear(64, 10),
    )


def accuracy(model, x, y, batch=1000) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            correct += int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    return correct / x.shape[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--train-subset", type=int, default=12000, help="first N training images (0: all 60000)")
    ap.add_argument("--test-subset", type=int, default=5000, help="first N test images (0: all 10000)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("example_rewrite.png"), help=".png, .svg or .pdf")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    train_x, train_y = load(args.data_dir, "train", args.train_subset)
    test_x, test_y = load(args.data_dir, "t10k", args.test_subset)

    # The one call: ReLU, LeakyReLU(0.2) and SiLU become PAUs initialised to approximate each of them.
    model = torch_rational.replace_activations(small_cnn())
    print(model)

    # The activation coefficients in their own parameter group: no weight decay, as in the PAU paper.
    opt = torch.optim.AdamW(torch_rational.param_groups(model, weight_decay=0.0), lr=2e-3, weight_decay=1e-4)

    t0 = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(train_x.shape[0])
        for step, i in enumerate(range(0, train_x.shape[0], args.batch)):
            idx = perm[i:i + args.batch]
            loss = nn.functional.cross_entropy(model(train_x[idx]), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % 50 == 0:
                print(f"epoch {epoch + 1} step {step:4d} loss {loss.item():.3f}", flush=True)
    print(f"trained {args.epochs} epoch(s) on {train_x.shape[0]} images in {time.time() - t0:.1f} s; "
          f"test accuracy {accuracy(model, test_x, test_y):.4f} on {test_x.shape[0]} images")

    # What did the activations see and learn? Record their inputs on test images, then plot.
    with torch_rational.record_inputs(model, range=(-6.0, 6.0), bins=120), torch.no_grad():
        model.eval()
        model(test_x[:2000])
    torch_rational.plot(model, args.out, title="PAUs after training (dashed: init, grey: inputs seen)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
