#!/usr/bin/env python3
"""Short demonstration: fit rational activations to standard functions, then train the same small
network on Fashion-MNIST with ReLU and with PAU (learnable, initialised as leaky_relu) and compare.

    python3 scripts/demo.py [--data-dir /usr/share/datasets/fashion-mnist] [--epochs 1]
"""

from __future__ import annotations

import argparse
import gzip
import struct
import sys
import time
from pathlib import Path

import torch
from torch import nn

import torch_rational


def read_idx(path: Path) -> torch.Tensor:
    """Reads an IDX file (gzipped or not): magic 0x0000 08 <ndim>, big-endian sizes, uint8 data."""
    if not path.is_file():
        raise FileNotFoundError(f"demo: {path} not found (install Debian's dataset-fashion-mnist or pass --data-dir)")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"demo: {path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    body = data[4 + 4 * ndim :]
    expected = 1
    for d in dims:
        expected *= d
    if len(body) != expected:
        raise ValueError(f"demo: {path} holds {len(body)} bytes of data, expected {expected}")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(dims)


def load(data_dir: Path, split: str):
    x = read_idx(data_dir / f"{split}-images-idx3-ubyte.gz").float().div_(255.0)
    y = read_idx(data_dir / f"{split}-labels-idx1-ubyte.gz").long()
    return (x - 0.2860) / 0.3530, y


def make_model(act) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 5, padding=2), act(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5, padding=2), act(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 128), act(), nn.Linear(128, 10),
    )


def train_eval(name, act, train, test, epochs, batch, seed):
    torch.manual_seed(seed)
    model = make_model(act)
    params_act = [p for n_, p in model.named_parameters() if n_.endswith(("numerator", "denominator"))]
    ids = {id(p) for p in params_act}
    params_rest = [p for p in model.parameters() if id(p) not in ids]
    groups = [{"params": params_rest, "weight_decay": 5e-4}]
    if params_act:
        groups.append({"params": params_act, "weight_decay": 0.0})  # the papers: no decay on activations
    opt = torch.optim.Adam(groups, lr=2e-3)
    x, y = train
    t0 = time.time()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(x.shape[0])
        for i, start in enumerate(range(0, x.shape[0], batch)):
            idx = perm[start : start + batch]
            loss = nn.functional.cross_entropy(model(x[idx].unsqueeze(1)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i % 100 == 0:
                print(f"  {name:<5} epoch {epoch + 1}/{epochs} step {i:4d}/{x.shape[0] // batch} loss {loss.item():.3f}",
                      flush=True)
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, test[0].shape[0], 1000):
            out = model(test[0][start : start + 1000].unsqueeze(1))
            correct += (out.argmax(1) == test[1][start : start + 1000]).sum().item()
    return model, correct / test[0].shape[0], time.time() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    print("== 1. Rational fits, degrees (5,4), version A, on [-3, 3] (max abs error)")
    for f in ["relu", "leaky_relu", "gelu", "swish", "tanh", "sigmoid"]:
        r = torch_rational.fit(f, (5, 4))
        print(f"  {f:<11} {r.max_error:.2e}")

    print(f"== 2. Fashion-MNIST ({args.data_dir}), small CNN, {args.epochs} epoch(s), ReLU vs PAU")
    try:
        train, test = load(args.data_dir, "train"), load(args.data_dir, "t10k")
    except (OSError, ValueError) as e:
        print(e, file=sys.stderr)
        return 1
    results = {}
    for name, act in [("relu", nn.ReLU), ("pau", torch_rational.PAU)]:
        model, acc, secs = train_eval(name, act, train, test, args.epochs, args.batch_size, args.seed)
        results[name] = (acc, secs, model)
    print("== Results")
    print(f"| activation | test accuracy | seconds |")
    print(f"|------------|---------------|---------|")
    for name, (acc, secs, _) in results.items():
        print(f"| {name:<10} | {acc:13.4f} | {secs:7.1f} |")
    pau = [m for m in results["pau"][2].modules() if isinstance(m, torch_rational.PAU)][0]
    print("first PAU after training: numerator", [round(v, 4) for v in pau.numerator[0].tolist()])
    print("                          denominator", [round(v, 4) for v in pau.denominator[0].tolist()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
