#!/usr/bin/python3
"""syncbn.torch.SyncBatchNorm on P MPI ranks against one process of torch.nn.

Run: PYTHONPATH=python mpiexec -n P /usr/bin/python3 tests/python/test_sync_mpi.py   (P = 2, 3, 4, ...)

1. split_batches: a global batch, split unevenly over the ranks (one split leaves
   a rank with no samples), through SyncBatchNorm ((N,C), (N,C,L), 2d and 3d,
   contiguous and channels_last) for train, eval and train steps, against
   torch.nn.BatchNormXd in float64 on the whole batch: each rank's outputs and
   input gradients are its slice of the reference's, the running buffers are the
   reference's and bitwise identical on every rank, the weight/bias gradients
   summed over the ranks are the reference's. Also SyncBatchNorm(comm=None)
   (MPI.COMM_WORLD) and groups of 2 ranks (split_groups).
2. simple_cnn: the seed's SimpleCNN, Conv2d(3,16,3,padding=1) -> BatchNorm2d(16) ->
   ReLU -> MaxPool2d(2), on an (8,3,32,32) batch split over the ranks, against
   its SyncBatchNorm twin: outputs, input gradients and, after
   allreduce_gradients, parameter gradients equal the one-process model's
   (float64).
3. fashion_mnist: bench/pytorch_twin.py's convnet made data-parallel with
   convert_sync_batchnorm + allreduce_gradients (global batch 32, P | 32) on
   Fashion-MNIST tracks the one-process PyTorch run (torch.nn.BatchNorm2d,
   batch 32, same initial weights and data order): relative loss difference
   <= 1e-4 at each of 10 steps.
4. mismatch: a rank with another channel count, momentum, eps or affine gets
   SyncBNError(SBN_ERR_MISMATCH) on every rank, naming the problem, at once.
5. eval_is_local: an eval call on one rank alone does not wait for the others.

Each rank records its failures; after each test the ranks agree on the outcome.
Rank 0 prints 'N passed, N failed'; every rank exits 1 when any rank failed.
"""
import copy
import faulthandler
import gzip
import os
import sys
import time
import traceback

import numpy as np
import torch
from mpi4py import MPI
from torch import nn

import syncbn
import syncbn.torch as sbn
from syncbn.mpi import Communicator, allreduce_gradients

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import pytorch_twin  # noqa: E402

WORLD = MPI.COMM_WORLD
RANK, P = WORLD.Get_rank(), WORLD.Get_size()
TOLERANCE = 1e-5
TIMEOUT = 30.0  # seconds a collective waits: a bug shows as an error, not a hang
DATA = "/usr/share/datasets/fashion-mnist"

torch.set_num_threads(1)
failures = []  # this rank's, for the current test
worst = {}


def check(condition, message):
    if not condition:
        failures.append(message)
    return condition


def relative_difference(ours, reference, scale=None):
    ours, reference = ours.detach().double(), reference.detach().double()
    if ours.shape != reference.shape:
        return float("inf")
    if ours.numel() == 0:
        return 0.0
    if scale is None:
        scale = float(reference.abs().max())  # relative to the reference's largest element
    difference = float((ours - reference).abs().max())
    return difference / scale if scale > 0 else difference


def close(what, ours, reference, tolerance=TOLERANCE, scale=None):
    difference = relative_difference(ours, reference, scale)
    worst[what] = max(worst.get(what, 0.0), difference)
    return check(difference <= tolerance, f"{what}: relative difference {difference:.3e} > {tolerance:.0e}")


def fresh_comm(mpi_comm=WORLD):
    comm = Communicator(mpi_comm)
    comm.set_timeout(TIMEOUT)
    return comm


def identical_on_all_ranks(what, tensor, mpi_comm=WORLD):
    """Compares the bytes of tensor across the ranks of mpi_comm."""
    mine = tensor.detach().contiguous().numpy().tobytes()
    everyone = mpi_comm.allgather(mine)
    check(all(b == everyone[0] for b in everyone), f"{what} differs between ranks (bitwise)")


def summed(tensor, mpi_comm=WORLD):
    total = mpi_comm.allreduce(tensor.detach().double().numpy(), op=MPI.SUM)
    return torch.from_numpy(np.asarray(total))


def splits(total, parts, pattern):
    """Sample counts per rank: 'uneven' (1, 2, ... then the rest) or 'empty' (rank 1 gets none)."""
    if pattern == "uneven":
        counts = [min(r + 1, 3) for r in range(parts)]
        counts[-1] += total - sum(counts)
    else:
        counts = [0] * parts
        for r in range(parts):
            if r != 1 % parts:
                counts[r] = 1
        counts[0] += total - sum(counts)
    assert sum(counts) == total and min(counts) >= 0
    return counts


def offsets(counts):
    return [sum(counts[:r]) for r in range(len(counts) + 1)]


# ---------- 1. SyncBatchNorm on split batches ----------
TORCH_BN = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}
CASES = [  # name, global shape, memory format
    ("(N,C)", (13, 6), None),
    ("(N,C,L)", (9, 6, 5), None),
    ("2d NCHW", (9, 6, 4, 5), None),
    ("2d channels_last", (9, 6, 4, 5), torch.channels_last),
    ("3d NCDHW", (7, 6, 2, 3, 4), None),
    ("3d channels_last_3d", (7, 6, 2, 3, 4), torch.channels_last_3d),
]


def run_split(name, shape, fmt, pattern, momentum, affine, track, comm, mpi_comm, seed):
    """One configuration: 3 train steps, 1 eval step, 1 train step on comm (spanning mpi_comm's ranks)."""
    ranks, me = mpi_comm.Get_size(), mpi_comm.Get_rank()
    channels = shape[1]
    counts = splits(shape[0], ranks, pattern)
    lo, hi = offsets(counts)[me], offsets(counts)[me + 1]
    generator = torch.Generator().manual_seed(seed)  # the same global data on every rank
    ours = sbn.SyncBatchNorm(channels, momentum=momentum, affine=affine, track_running_stats=track, comm=comm)
    reference = TORCH_BN[len(shape)](channels, momentum=momentum, affine=affine,
                                     track_running_stats=track).double()
    with torch.no_grad():
        if affine:
            ours.weight.copy_(torch.rand(channels, generator=generator) + 0.5)
            ours.bias.copy_(torch.randn(channels, generator=generator))
            reference.weight.copy_(ours.weight.double()), reference.bias.copy_(ours.bias.double())
        if track:
            ours.running_mean.copy_(torch.randn(channels, generator=generator))
            ours.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)
            reference.running_mean.copy_(ours.running_mean.double())
            reference.running_var.copy_(ours.running_var.double())
    label = f"{name} {pattern} {counts} momentum={momentum} affine={affine} track={track}"
    bounds = offsets(counts)
    modes = [True, True, True, False, True]
    if not track and 0 in counts:
        # eval without running statistics normalizes by each rank's own batch, which an empty rank has
        # not: it cannot take part (SBN_ERR_BATCH), and skipping it while the others run a backward in
        # eval makes the next training collective a mismatch ("the mode"), so no eval step here
        modes = [True, True, True, True]
    for step, training in enumerate(modes):
        ours.train(training), reference.train(training)
        x = torch.randn(shape, generator=generator) * 2 + 1.5
        upstream = torch.randn(shape, generator=generator, dtype=torch.float64)
        # the reference: one process on the whole batch; except in eval without running statistics, where
        # each rank normalizes by its own batch (no communication, as torch.nn.SyncBatchNorm)
        pieces = [(0, shape[0])] if training or track else \
            [(bounds[r], bounds[r + 1]) for r in range(ranks) if bounds[r + 1] > bounds[r]]
        y_reference = torch.zeros(shape, dtype=torch.float64)
        dx_reference = torch.zeros(shape, dtype=torch.float64)
        for a, b in pieces:
            x_piece = x[a:b].double().requires_grad_()
            y_piece = reference(x_piece)
            (y_piece * upstream[a:b]).sum().backward()
            y_reference[a:b], dx_reference[a:b] = y_piece.detach(), x_piece.grad
        ok = True
        try:
            local = x[lo:hi]
            if fmt is not None:
                local = local.contiguous(memory_format=fmt)
            local = local.clone(memory_format=torch.preserve_format).requires_grad_()
            y = ours(local)
            (y.double() * upstream[lo:hi]).sum().backward()
            ok = close("output", y, y_reference[lo:hi]) and close("input grad", local.grad, dx_reference[lo:hi])
            if fmt is not None and hi > lo:
                ok = check(y.is_contiguous(memory_format=fmt), f"{label}: output not {fmt}") and ok
            if track:
                ok = close("running_mean", ours.running_mean, reference.running_mean) and ok
                ok = close("running_var", ours.running_var, reference.running_var) and ok
                ok = check(int(ours.num_batches_tracked) == int(reference.num_batches_tracked),
                           f"num_batches_tracked {int(ours.num_batches_tracked)} != "
                           f"{int(reference.num_batches_tracked)}") and ok
        except Exception:  # noqa: BLE001  (recorded; the collective checks below keep the ranks in step)
            ok = check(False, f"exception:\n{traceback.format_exc()}")
        if track:
            identical_on_all_ranks(f"{label}: running_mean", ours.running_mean, mpi_comm)
            identical_on_all_ranks(f"{label}: running_var", ours.running_var, mpi_comm)
        if affine:  # each rank's grads are its own sums: their total is the one-process gradient
            for mine, theirs, what in ((ours.weight, reference.weight, "weight"), (ours.bias, reference.bias, "bias")):
                grad = mine.grad if mine.grad is not None else torch.zeros_like(mine)
                ok = close(f"{what} grad (sum over ranks)", summed(grad, mpi_comm), theirs.grad) and ok
        if not ok:
            failures.append(f"  ... in {label}, step {step}")
        if not mpi_comm.allreduce(ok, op=MPI.LAND):  # together: the ranks stay in step
            return


def test_split_batches():
    comm = fresh_comm()
    seed = 10
    for name, shape, fmt in CASES:
        for pattern in ("uneven", "empty"):
            for momentum in (0.1, None):
                seed += 1
                run_split(name, shape, fmt, pattern, momentum, True, True, comm, WORLD, seed)
    for affine, track in ((False, True), (True, False), (False, False)):
        for pattern in ("uneven", "empty"):
            seed += 1
            run_split("2d channels_last", (9, 6, 4, 5), torch.channels_last, pattern, 0.1, affine, track, comm,
                      WORLD, seed)


def test_default_world_communicator():
    """SyncBatchNorm(comm=None) makes MPI.COMM_WORLD's communicator at its first call."""
    bn = sbn.SyncBatchNorm(6)
    bn.train()
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(4 * P, 6, 3, 3, generator=generator)
    reference = nn.BatchNorm2d(6).double()
    y = bn(x[4 * RANK:4 * RANK + 4])
    close("output (comm=None)", y, reference(x.double())[4 * RANK:4 * RANK + 4])
    check(bn.comm is not None and bn.comm.size == P and bn.comm.rank == RANK, "comm=None is not MPI.COMM_WORLD")


def test_groups():
    """Groups of 2 consecutive ranks (split_groups): each group is its own batch."""
    if P % 2:
        print("  (skipped: P is odd)") if RANK == 0 else None
        return
    world = fresh_comm()
    groups = world.split_groups(2)
    groups.set_timeout(TIMEOUT)
    check(groups.size == 2 and groups.rank == RANK % 2, f"split_groups(2): rank {groups.rank} of {groups.size}")
    pair = WORLD.Split(RANK // 2, RANK)
    run_split("2d NCHW in groups of 2", (6, 5, 3, 3), None, "uneven", 0.1, True, True, groups, pair,
              100 + RANK // 2)
    pair.Free()


# ---------- 2. the seed's SimpleCNN and its SyncBatchNorm twin ----------
class SimpleCNN(nn.Module):
    def __init__(self, norm=nn.BatchNorm2d):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = norm(16)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        return self.pool(self.relu(self.bn(self.conv(x))))


class SyncCNN(SimpleCNN):
    def __init__(self, comm):
        super().__init__(norm=lambda channels: sbn.SyncBatchNorm(channels, comm=comm))


def test_simple_cnn():
    comm = fresh_comm()
    torch.manual_seed(0)
    reference = SimpleCNN()
    ours = SyncCNN(comm)
    ours.load_state_dict(reference.state_dict(), strict=True)
    reference = reference.double()
    generator = torch.Generator().manual_seed(7)
    n = 8
    counts = [len(part) for part in np.array_split(np.arange(n), P)]  # 2 each at P = 4
    lo, hi = offsets(counts)[RANK], offsets(counts)[RANK + 1]
    for step in range(3):
        x = torch.randn(n, 3, 32, 32, generator=generator)
        upstream = torch.randn(n, 16, 16, 16, generator=generator, dtype=torch.float64)
        # the one-process loss is mean(out * upstream); each rank's share of it is
        # sum(out_r * upstream_r) * P / numel, so that the average of the ranks' gradients is its gradient
        x_reference = x.double().requires_grad_()
        out_reference = reference(x_reference)
        (out_reference * upstream).mean().backward()
        x_local = x[lo:hi].clone().requires_grad_()
        out = ours(x_local)
        (out.double() * upstream[lo:hi]).sum().mul(P / upstream.numel()).backward()
        close("SimpleCNN output", out, out_reference[lo:hi])
        # a rank's input gradient is P times its slice of the one-process one (its loss is weighted by P)
        close("SimpleCNN input grad", x_local.grad / P, x_reference.grad[lo:hi])
        allreduce_gradients(ours, comm)
        for (name, p), (_, q) in zip(ours.named_parameters(), reference.named_parameters()):
            # conv.bias, right before BN, has gradient 0 in exact arithmetic: rounding noise, measured
            # against the scale of conv.weight's gradient
            scale = float(reference.conv.weight.grad.abs().max()) if name == "conv.bias" else None
            close("SimpleCNN parameter grads (averaged)", p.grad, q.grad, scale=scale)
            identical_on_all_ranks(f"SimpleCNN {name}.grad after allreduce_gradients", p.grad)
        close("SimpleCNN running_var", ours.bn.running_var, reference.bn.running_var)
        identical_on_all_ranks("SimpleCNN running_mean", ours.bn.running_mean)
        with torch.no_grad():  # an SGD step on both, from the same (averaged) gradients
            for p, q in zip(ours.parameters(), reference.parameters()):
                p -= 0.1 * p.grad
                q -= 0.1 * q.grad
                p.grad = None
                q.grad = None
                q.copy_(p.double())  # the float64 model follows the float32 weights: compare one step at a time


# ---------- 3. data-parallel Fashion-MNIST training tracks one process ----------
def load_fashion_mnist(images):
    """The first `images` training images, normalized as bench/pytorch_twin.py's load()."""
    with gzip.open(f"{DATA}/train-images-idx3-ubyte.gz") as f:
        raw = np.frombuffer(f.read(16 + images * 784), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(f"{DATA}/train-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(8 + images), np.uint8, offset=8)
    x = (torch.from_numpy(raw.astype(np.float32)) / 255.0 - pytorch_twin.MEAN) / pytorch_twin.STD
    return x, torch.from_numpy(labels.astype(np.int64))


def test_fashion_mnist():
    batch, steps = 32, 10
    if batch % P:
        print(f"  (skipped: {P} ranks do not divide the batch of {batch})") if RANK == 0 else None
        return
    per_rank = batch // P
    x, y = load_fashion_mnist(4096)
    torch.manual_seed(1)
    reference = pytorch_twin.Twin("convnet", True)
    ours = sbn.convert_sync_batchnorm(copy.deepcopy(reference), fresh_comm())
    check(isinstance(ours.bn1, sbn.SyncBatchNorm) and isinstance(ours.bn2, sbn.SyncBatchNorm),
          "convert_sync_batchnorm left a torch.nn BatchNorm")
    comm = ours.bn1.comm

    def optimizer(model):
        return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    opt_reference, opt_ours = optimizer(reference), optimizer(ours)
    loss_fn = nn.CrossEntropyLoss()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))
    deviations = []
    for step in range(steps):
        idx = order[step * batch:(step + 1) * batch]
        opt_reference.zero_grad()
        loss_reference = loss_fn(reference(x[idx]), y[idx])
        loss_reference.backward()
        opt_reference.step()
        mine = idx[RANK * per_rank:(RANK + 1) * per_rank]
        opt_ours.zero_grad()
        loss = loss_fn(ours(x[mine]), y[mine])
        loss.backward()
        allreduce_gradients(ours, comm)
        opt_ours.step()
        global_loss = WORLD.allreduce(float(loss), op=MPI.SUM) / P  # equal shares: the mean over 32
        deviations.append(abs(global_loss - float(loss_reference)) / abs(float(loss_reference)))
    worst["Fashion-MNIST relative loss difference (10 steps)"] = max(deviations)
    if RANK == 0:
        print("  relative loss difference per step: " + " ".join(f"{d:.1e}" for d in deviations))
    check(max(deviations) <= 1e-4, f"Fashion-MNIST: relative loss differences {['%.1e' % d for d in deviations]}")
    for name in ("bn1", "bn2"):
        for buffer in ("running_mean", "running_var", "num_batches_tracked"):
            identical_on_all_ranks(f"{name}.{buffer} after training", getattr(getattr(ours, name), buffer))
        close("Fashion-MNIST running_var after 10 steps", getattr(ours, name).running_var,
              getattr(reference, name).running_var, 1e-4)
    check(int(ours.bn1.num_batches_tracked) == steps, "num_batches_tracked after 10 steps")
    for p in ours.parameters():
        identical_on_all_ranks("weights after training", p)


# ---------- 4. ranks that disagree ----------
def expect_mismatch(what, make, words):
    comm = fresh_comm()
    bn = make(comm)
    channels = bn.num_features
    start = time.monotonic()
    try:
        bn(torch.randn(4, channels, 3, 3))
        check(False, f"{what}: no error on rank {RANK}")
    except syncbn.SyncBNError as e:
        message = str(e)
        check(e.status == "SBN_ERR_MISMATCH", f"{what}: status {e.status} ({message})")
        check(any(word in message for word in words), f"{what}: the message does not name it: {message!r}")
        if RANK == 0:
            print(f"  {what}: {message}")
    elapsed = time.monotonic() - start
    check(elapsed < TIMEOUT / 3, f"{what}: the error took {elapsed:.1f} s (a timeout, not a detected mismatch)")
    WORLD.Barrier()


def test_mismatch():
    odd = RANK == 1
    expect_mismatch("rank 1 with 5 channels, the others 4",
                    lambda c: sbn.SyncBatchNorm(5 if odd else 4, comm=c), ["channel"])
    expect_mismatch("rank 1 with momentum 0.2, the others 0.1",
                    lambda c: sbn.SyncBatchNorm(4, momentum=0.2 if odd else 0.1, comm=c), ["momentum"])
    expect_mismatch("rank 1 with momentum None (cumulative), the others 0.1",
                    lambda c: sbn.SyncBatchNorm(4, momentum=None if odd else 0.1, comm=c), ["cumulative"])
    expect_mismatch("rank 1 with eps 1e-3, the others 1e-5",
                    lambda c: sbn.SyncBatchNorm(4, eps=1e-3 if odd else 1e-5, comm=c), ["eps"])
    expect_mismatch("rank 1 not affine, the others affine",
                    lambda c: sbn.SyncBatchNorm(4, affine=not odd, comm=c), ["affine"])


def test_eval_is_local():
    comm = fresh_comm()
    bn = sbn.SyncBatchNorm(4, comm=comm)
    bn(torch.randn(4, 4, 2, 2))  # a collective training call on every rank
    bn.eval()
    if RANK == 0:  # rank 0 alone: no peer calls, no wait
        start = time.monotonic()
        bn(torch.randn(3, 4, 2, 2))
        check(time.monotonic() - start < 5, "an eval call waited for the other ranks")
    bn.train()
    bn(torch.randn(4, 4, 2, 2))  # the ranks are still in step
    identical_on_all_ranks("running_var after a local eval call", bn.running_var)


TESTS = [test_split_batches, test_default_world_communicator, test_groups, test_simple_cnn, test_fashion_mnist,
         test_mismatch, test_eval_is_local]


def main():
    # a rank stuck in a collective (a test bug that leaves the ranks out of step) prints where, and exits
    faulthandler.dump_traceback_later(400, exit=True)
    passed = failed = 0
    if RANK == 0:
        print(f"test_sync_mpi: {P} ranks")
    for test in TESTS:
        failures.clear()
        start = time.monotonic()
        try:
            test()
        except Exception:  # noqa: BLE001
            failures.append(f"exception:\n{traceback.format_exc()}")
            print(f"rank {RANK}: {test.__name__} raised:\n{traceback.format_exc()}", flush=True)
        everyone = WORLD.allgather(list(failures))
        if any(everyone):
            failed += 1
            if RANK == 0:
                print(f"FAIL: {test.__name__}")
                for rank, messages in enumerate(everyone):
                    for message in messages[:10]:
                        print(f"  rank {rank}: {message}")
        else:
            passed += 1
            if RANK == 0:
                print(f"ok: {test.__name__} ({time.monotonic() - start:.1f} s)")
        sys.stdout.flush()
    maxima = WORLD.gather(worst, root=0)
    if RANK == 0:
        merged = {}
        for d in maxima:
            for k, v in d.items():
                merged[k] = max(merged.get(k, 0.0), v)
        print("largest relative differences: " + ", ".join(f"{k} {v:.2e}" for k, v in sorted(merged.items())))
        print(f"{passed} passed, {failed} failed")
    sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
