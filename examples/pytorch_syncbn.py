#!/usr/bin/python3
"""Data-parallel training on CPU with syncbn's SyncBatchNorm: P ranks, each with its
share of every batch, normalize by the statistics of the whole batch.

    PYTHONPATH=python mpiexec -n 4 /usr/bin/python3 examples/pytorch_syncbn.py

(As root, Open MPI also needs OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1,
and --oversubscribe when there are fewer cores than ranks.)
"""
import sys

import torch
from mpi4py import MPI
from torch import nn

import syncbn.torch as sbn
from syncbn.mpi import Communicator, allreduce_gradients

comm = Communicator()  # every rank of MPI.COMM_WORLD
rank, ranks = comm.rank, comm.size
torch.set_num_threads(1)


class SyncCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = sbn.SyncBatchNorm(16, comm=comm)  # statistics over all ranks' images
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(16 * 16 * 16, 10)

    def forward(self, x):
        return self.fc(self.pool(torch.relu(self.bn(self.conv(x)))).flatten(1))


torch.manual_seed(0)  # the same initial weights on every rank
model = SyncCNN()     # (or any model: sbn.convert_sync_batchnorm(model, comm))
optimizer = torch.optim.SGD(model.parameters(), lr=0.002, momentum=0.9)
data = torch.Generator().manual_seed(1)  # the same data on every rank: 32 random images to learn by heart
images, labels = torch.randn(32, 3, 32, 32, generator=data), torch.randint(0, 10, (32,), generator=data)
mine = slice(rank * 32 // ranks, (rank + 1) * 32 // ranks)  # this rank's share of the global batch of 32
for step in range(10):
    optimizer.zero_grad()
    loss = nn.functional.cross_entropy(model(images[mine]), labels[mine])
    loss.backward()
    allreduce_gradients(model, comm)  # averaged over the ranks: the gradient of the whole batch
    optimizer.step()
    mean_loss = MPI.COMM_WORLD.allreduce(float(loss)) / ranks
    if rank == 0:
        print(f"step {step}: loss {mean_loss:.4f}")

# SyncBN's running statistics come out bitwise identical on every rank
stats = torch.cat([model.bn.running_mean, model.bn.running_var]).numpy().tobytes()
agree = all(s == stats for s in MPI.COMM_WORLD.allgather(stats))
if rank == 0:
    print(f"running statistics identical on all {ranks} ranks: {agree}")
sys.exit(0 if agree else 1)
