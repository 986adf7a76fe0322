"""DistributedDataParallel: two CPU processes (gloo) train a rewritten model on halves of a batch;
their activation coefficients must be identical to each other and equal to one process trained on
the whole batch (SGD, mean loss, equal split: the averaged gradient is the full-batch gradient)."""

from __future__ import annotations

import datetime
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import torch_rational

WORLD = 2
STEPS = 4
BATCH = 16  # split equally: 8 per rank


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))
    # float64 so the comparison with the single-process run is limited only by summation order.
    return torch_rational.replace_activations(model, verbose=False).to(torch.float64)


def _data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(STEPS, BATCH, 6, generator=g, dtype=torch.float64) * 2
    y = torch.randn(STEPS, BATCH, 1, generator=g, dtype=torch.float64)
    return x, y


def _train(model, x, y, lr=0.1):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for step in range(x.shape[0]):
        opt.zero_grad()
        nn.functional.mse_loss(model(x[step]), y[step]).backward()  # mean over the (local) batch
        opt.step()


def _worker(rank: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    # Rank 1 once aborted in CI at teardown ("terminate called without an active exception"). A TCP store
    # lives in rank 0, which may exit while rank 1 still tears its group down; a file store has no owner,
    # and needs no free port, which another process could take between choosing it and binding it.
    dist.init_process_group("gloo", init_method=f"file://{os.path.join(out_dir, 'store')}", rank=rank,
                            world_size=WORLD, timeout=datetime.timedelta(seconds=60))
    try:
        model = nn.parallel.DistributedDataParallel(_model())
        x, y = _data()
        per = BATCH // WORLD
        _train(model, x[:, rank * per:(rank + 1) * per], y[:, rank * per:(rank + 1) * per])
        torch.save({k: v.detach().clone() for k, v in model.module.state_dict().items()},
                   os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()  # neither rank tears its connections down while the other still uses them
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo")
def test_ddp_two_processes_match_single_process(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path),), nprocs=WORLD, join=True)
    states = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

    single = _model()
    init = {k: v.clone() for k, v in single.state_dict().items()}
    x, y = _data()
    _train(single, x, y)
    expected = single.state_dict()

    coeff_keys = [k for k in expected if k.endswith(("numerator", "denominator"))]
    assert len(coeff_keys) == 4
    for k in expected:
        # DDP all-reduces the gradients, so both ranks take bitwise the same steps.
        assert torch.equal(states[0][k], states[1][k]), f"{k} differs between ranks"
        torch.testing.assert_close(states[0][k], expected[k], rtol=1e-10, atol=1e-12,
                                   msg=lambda m, k=k: f"{k}: DDP vs single process: {m}")
    for k in coeff_keys:
        assert (expected[k] - init[k]).abs().max() > 1e-4, f"{k} did not train, the comparison proves nothing"
