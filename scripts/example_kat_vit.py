#!/usr/bin/env python3
"""A small vision transformer on Fashion-MNIST with GELU MLP activations and with KAT's
group-rational activations (Kolmogorov-Arnold Transformer, ICLR 2025: one numerator shared by all
groups, one safe denominator 1 + sum_k |b_k| |x|^k per group, initialised as GELU), each trained for
the same CPU time budget; prints test accuracy and time per step for both.

    python3 scripts/example_kat_vit.py --minutes 1
"""

from __future__ import annotations

import argparse
import gzip
import struct
import time
from pathlib import Path

import torch
from torch import nn

import torch_rational


def read_idx(path: Path) -> torch.Tensor:
    """An IDX file (the MNIST format, optionally gzipped) as a uint8 tensor."""
    data = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not a uint8 IDX file")
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    return torch.frombuffer(bytearray(data[4 + 4 * ndim:]), dtype=torch.uint8).reshape(shape)


def load_split(root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    def find(stem: str) -> Path:
        for name in (stem, stem + ".gz"):
            if (root / name).is_file():
                return root / name
        raise FileNotFoundError(f"{root / stem}[.gz] not found")

    images = read_idx(find(f"{split}-images-idx3-ubyte")).float().div_(255.0)
    labels = read_idx(find(f"{split}-labels-idx1-ubyte")).long()
    images = (images - 0.2860) / 0.3530  # Fashion-MNIST training mean / std
    return images.unsqueeze(1), labels


class Block(nn.Module):
    """Pre-norm transformer block: attention, then an MLP whose activation is `activation`."""

    def __init__(self, dim: int, heads: int, hidden: int, activation: nn.Module) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), activation, nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """Patch embedding, learned position embedding, `depth` blocks, mean-pooled tokens, linear head."""

    def __init__(self, *, patch: int = 4, dim: int = 64, depth: int = 3, heads: int = 4, mlp_ratio: int = 2,
                 classes: int = 10) -> None:
        super().__init__()
        self.embed = nn.Conv2d(1, dim, patch, stride=patch)
        self.pos = nn.Parameter(torch.zeros(1, (28 // patch) ** 2, dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio * dim, nn.GELU()) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x).flatten(2).transpose(1, 2) + self.pos  # (B, T, C)
        return self.head(self.norm(self.blocks(tokens)).mean(dim=1))


def group_rational(groups: int):
    """replace_activations factory: KAT's group-rational unit on (B, T, C) tokens, GELU at init."""
    def make(_replaced: nn.Module) -> nn.Module:
        return torch_rational.Rational((5, 4), version="A", init="gelu", num_groups=groups, channel_dim=-1,
                                       shared_numerator=True)
    return make


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 1000) -> float:
    model.eval()
    correct = sum((model(images[i:i + batch]).argmax(1) == labels[i:i + batch]).sum().item()
                  for i in range(0, len(images), batch))
    model.train()
    return correct / len(images)


def train(model: nn.Module, data, *, seconds: float, batch: int, lr: float, seed: int) -> tuple[int, float]:
    """Trains for `seconds` of wall time; returns (steps, seconds per step)."""
    images, labels = data
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        idx = torch.randint(len(images), (batch,), generator=gen)
        loss = nn.functional.cross_entropy(model(images[idx]), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
    return steps, (time.perf_counter() - start) / max(steps, 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("/usr/share/datasets/fashion-mnist"),
                   help="folder with the Fashion-MNIST IDX files (gzipped or not)")
    p.add_argument("--minutes", type=float, default=1.0, help="training time per model")
    p.add_argument("--groups", type=int, default=8, help="rational groups along the MLP's hidden features")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    train_data, test_data = load_split(args.data, "train"), load_split(args.data, "t10k")
    print(f"Fashion-MNIST: {len(train_data[0])} train / {len(test_data[0])} test images; "
          f"{args.minutes:g} min per model, {torch.get_num_threads()} threads")
    print(f"{'activation':28s} {'steps':>6s} {'ms/step':>8s} {'test acc':>9s}")
    for name in ("GELU", f"group-rational (G={args.groups})"):
        torch.manual_seed(args.seed)
        model = ViT()
        if name != "GELU":
            torch_rational.replace_activations(model, group_rational(args.groups), targets=(nn.GELU,),
                                               verbose=False)
        steps, per_step = train(model, train_data, seconds=60 * args.minutes, batch=args.batch, lr=args.lr,
                                seed=args.seed)
        print(f"{name:28s} {steps:6d} {1e3 * per_step:8.1f} {accuracy(model, *test_data):9.4f}", flush=True)


if __name__ == "__main__":
    main()
