#!/usr/bin/python3
"""The PyTorch twin of `syncbn train`: the same network (convnet or seed),
PyTorch's default initialization (which syncbn reproduces), the same
normalization of Fashion-MNIST, SGD with the same momentum and weight decay,
batch 32, one process. Prints one JSON line with test accuracy, final loss
and training images per second.

Run with Debian's python3-torch:
  /usr/bin/python3 bench/pytorch_twin.py --epochs 2 --threads 2
  /usr/bin/python3 bench/pytorch_twin.py --steps 300 --threads 1      (throughput only)
"""
import argparse
import gzip
import json
import math
import time

import numpy as np
import torch
import torch.nn as nn

MEAN, STD = 0.2860, 0.3530


def load(folder, split):
    with gzip.open(f"{folder}/{split}-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(f"{folder}/{split}-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    x = (torch.from_numpy(images.astype(np.float32)) / 255.0 - MEAN) / STD
    return x, torch.from_numpy(labels.astype(np.int64))


class Twin(nn.Module):
    """syncbn's `seed` and `convnet` with the module names of its checkpoints
    (conv1, bn1, conv2, bn2, fc): a state dict read from a syncbn checkpoint
    loads here with strict=True, and one saved here loads into syncbn.
    Modules are created in syncbn's order, so that torch.manual_seed(s)
    gives syncbn's initial weights for --seed s."""

    def __init__(self, kind="convnet", norm=True, in_channels=1, size=28, classes=10):
        super().__init__()
        self.kind, self.norm = kind, norm
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1)
        if norm:
            self.bn1 = nn.BatchNorm2d(16)
        channels, size = 16, size // 2
        if kind == "convnet":
            self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
            if norm:
                self.bn2 = nn.BatchNorm2d(32)
            channels, size = 32, size // 2
        self.fc = nn.Linear(channels * size * size, classes)

    def block(self, x, conv, bn):
        x = conv(x)
        if bn is not None:
            x = bn(x)
        return nn.functional.max_pool2d(nn.functional.relu(x), 2)

    def forward(self, x):
        x = self.block(x, self.conv1, getattr(self, "bn1", None))
        if self.kind == "convnet":
            x = self.block(x, self.conv2, getattr(self, "bn2", None))
        return self.fc(x.flatten(1))


def model_for(kind, norm):
    return Twin(kind, norm)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="convnet")
    p.add_argument("--norm", default="bn", choices=["bn", "none"])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--steps", type=int, default=0)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--lr-schedule", default="cosine", choices=["cosine", "constant"])
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    x_train, y_train = load(a.data, "train")
    x_test, y_test = load(a.data, "t10k")
    model = model_for(a.model, a.norm == "bn")
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(a.seed)
    per_epoch = len(x_train) // a.batch
    total = a.steps if a.steps > 0 else per_epoch * a.epochs
    step, train_seconds, loss = 0, 0.0, float("nan")
    model.train()
    while step < total:
        order = torch.randperm(len(x_train), generator=generator)
        for k in range(per_epoch):
            if step == total:
                break
            idx = order[k * a.batch:(k + 1) * a.batch]
            start = time.perf_counter()
            for group in opt.param_groups:  # syncbn's closed form, step counted from 0
                group["lr"] = a.lr if a.lr_schedule == "constant" else a.lr * 0.5 * (1 + math.cos(math.pi * step / total))
            opt.zero_grad()
            out = loss_fn(model(x_train[idx]), y_train[idx])
            out.backward()
            opt.step()
            train_seconds += time.perf_counter() - start
            loss = float(out)
            step += 1
    model.eval()
    correct = 0
    with torch.no_grad():
        for k in range(0, len(x_test), 500):
            correct += int((model(x_test[k:k + 500]).argmax(1) == y_test[k:k + 500]).sum())
    print(json.dumps({"framework": f"pytorch {torch.__version__}", "steps": step, "threads": a.threads,
                      "final_train_loss": loss, "test_accuracy": correct / len(x_test),
                      "ms_per_step": 1e3 * train_seconds / step,
                      "images_per_second": a.batch * step / train_seconds}))


if __name__ == "__main__":
    main()
