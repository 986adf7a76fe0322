#!/usr/bin/env python3
"""Training-step time of a VGG-style CNN (CIFAR-sized input) with PAU activations vs ReLU.

One step = forward, cross-entropy loss, backward, SGD update. Per-step time is the median over
timed steps (CUDA events on CUDA) after warm-up; the overhead is (PAU - ReLU) / ReLU. Variants:
ReLU, PAU with one coefficient set per layer (G = 1), PAU per channel (G = C).

    python3 scripts/benchmark_vgg_step.py                                  # CUDA, batch 128
    python3 scripts/benchmark_vgg_step.py --amp                            # bfloat16 autocast
    python3 scripts/benchmark_vgg_step.py --device cpu --batch 4 --width 0.125 --steps 2   # smoke
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
import torch_rational
from torch import nn

VGG11 = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


def make_vgg(activation, width: float, num_classes: int = 10) -> nn.Module:
    layers, c_in = [], 3
    for v in VGG11:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        c = max(8, int(v * width))
        layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), activation(c)]
        c_in = c
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in, num_classes))


ACTIVATIONS = {
    "relu": lambda c: nn.ReLU(inplace=True),
    "pau": lambda c: torch_rational.PAU(),
    "pau_per_channel": lambda c: torch_rational.PAU(num_groups=c),
}


def time_steps(model, x, y, steps, warmup, amp, device):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            step()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--width", type=float, default=1.0, help="channel multiplier (1.0 = VGG-11)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--markdown", default=None)
    ap.add_argument("--json", default=None, help="also write the results as JSON to this file")
    args = ap.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    header = (f"# VGG-11 training step, batch {args.batch}, width {args.width}, "
              f"{'bf16 autocast' if args.amp else 'float32'}{', channels_last' if args.channels_last else ''}, "
              f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}, torch {torch.__version__}")
    print(header)
    results = {}
    for name, act in ACTIVATIONS.items():
        model = make_vgg(act, args.width).to(device)
        if args.channels_last:
            model = model.to(memory_format=torch.channels_last)
        results[name] = time_steps(model, x, y, args.steps, args.warmup, args.amp, device)
        del model
    base = results["relu"]
    lines = ["| activation | ms / step | overhead vs ReLU |", "|---|---|---|"]
    for name, ms in results.items():
        lines.append(f"| {name} | {ms:.3f} | {100 * (ms - base) / base:+.1f}% |")
    print("\n".join(lines))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(header + "\n\n" + "\n".join(lines) + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"header": header, "ms_per_step": results,
                       "ratio_vs_relu": {name: ms / base for name, ms in results.items()}}, f, indent=1)


if __name__ == "__main__":
    main()
