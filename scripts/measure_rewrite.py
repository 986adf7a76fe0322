#!/usr/bin/env python3
"""How much replace_activations changes a model's eval-mode output at init, and how long it takes.

    python3 scripts/measure_rewrite.py [--models mobilenet_v2 convnext_atto ...]

mobilenet_v2 comes from torchvision, the others from timm (neither is a dependency of
torch_rational: run it where they are installed). Random weights (seed 0), eval mode, a batch of 4
random 224x224 images. The change of the features (the input of the classifier head, whose random
weights make the logits of some models tiny) and of the logits: max |after - before| and the
relative L2 change ||after - before|| / ||before||."""

from __future__ import annotations

import argparse
import copy
import time

import torch

import torch_rational


def build(name: str) -> torch.nn.Module:
    if name == "mobilenet_v2":
        import torchvision

        return torchvision.models.mobilenet_v2()
    import timm

    return timm.create_model(name, pretrained=False)


def features(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    if hasattr(model, "forward_features"):  # timm
        return model.forward_features(x)
    return model.features(x)  # torchvision


def change(before: torch.Tensor, after: torch.Tensor) -> str:
    return f"{(after - before).abs().max().item():9.3g} {((after - before).norm() / before.norm()).item():7.1%}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["mobilenet_v2", "convnext_atto", "mobilenetv3_small_100"])
    args = ap.parse_args()
    torch.manual_seed(0)
    x = torch.randn(4, 3, 224, 224)
    print(f"{'model':22} {'replaced':>8} {'functions':18} {'time s':>6} | features: {'max |d|':>9} {'rel L2':>7} "
          f"| logits: {'max |d|':>9} {'rel L2':>7}")
    for name in args.models:
        torch.manual_seed(0)
        model = build(name).eval()
        with torch.no_grad():
            before = (features(model, x), model(x))
        t0 = time.perf_counter()
        new = torch_rational.replace_activations(copy.deepcopy(model), verbose=False).eval()
        seconds = time.perf_counter() - t0
        acts = torch_rational.activation_modules(new)
        inits = sorted({m.init for _, m in acts})
        with torch.no_grad():
            after = (features(new, x), new(x))
        print(f"{name:22} {len(acts):8d} {','.join(inits):18} {seconds:6.2f} | features: {change(before[0], after[0])} "
              f"| logits: {change(before[1], after[1])}")


if __name__ == "__main__":
    main()
