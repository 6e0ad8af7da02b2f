#!/usr/bin/python3
"""Weights move between syncbn and stock PyTorch, checked by PyTorch itself.

1. syncbn -> PyTorch: `syncbn train` (convnet, BN) with checkpoints, `syncbn export`
   to a .pt file; torch.load(weights_only=True) and load_state_dict(strict=True) into
   the twin (bench/pytorch_twin.py); PyTorch's logits on the whole test set must match
   `syncbn eval --logits` within 1e-4 and its test accuracy must equal syncbn's.
2. PyTorch -> syncbn: the twin trained for a few steps in PyTorch (with and without
   BN), saved with torch.save, converted by tools/state_dict_to_safetensors.py;
   `syncbn eval --weights` must report PyTorch's accuracy, and `syncbn train --init`
   must start from those weights (at a vanishing learning rate and without BN, its
   final test accuracy is PyTorch's).

Usage: interop_torch.py SYNCBN   (run with Debian's /usr/bin/python3 and python3-torch)
"""
import gzip
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import pytorch_twin  # noqa: E402

DATA = "/usr/share/datasets/fashion-mnist"
SYNCBN = sys.argv[1]
failures = []


def check(condition, message):
    print(("ok: " if condition else "FAIL: ") + message)
    if not condition:
        failures.append(message)


def syncbn(*args):
    done = subprocess.run([SYNCBN, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"syncbn {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout


def test_set():
    x, y = pytorch_twin.load(DATA, "t10k")
    return x, y


def torch_logits(model, x):
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[k:k + 1000]) for k in range(0, len(x), 1000)])


def syncbn_to_pytorch(work, x, y):
    ckpt = os.path.join(work, "ckpt")
    syncbn("train", "--model", "convnet", "--norm", "bn", "--steps", "300", "--checkpoint-dir", ckpt)
    pt = os.path.join(work, "model.pt")
    syncbn("export", ckpt, pt)
    logits_path = os.path.join(work, "logits.bin")
    report = json.loads(syncbn("eval", "--weights", ckpt, "--logits", logits_path))
    theirs = np.fromfile(logits_path, dtype="<f4").reshape(len(x), 10)

    state = torch.load(pt, weights_only=True)
    model = pytorch_twin.Twin("convnet", True)
    model.load_state_dict(state, strict=True)  # raises on any missing, unexpected or misshapen tensor
    check(int(state["bn1.num_batches_tracked"]) == 300, "num_batches_tracked came through as 300")
    ours = torch_logits(model, x).numpy()
    diff = float(np.max(np.abs(ours - theirs)))
    check(diff <= 1e-4, f"PyTorch's logits on the 10000 test images match syncbn's (max |diff| {diff:.2e})")
    accuracy = float((torch.from_numpy(ours).argmax(1) == y).float().mean())
    check(accuracy == report["test_accuracy"] or abs(accuracy - report["test_accuracy"]) < 5e-7,
          f"PyTorch's test accuracy {accuracy:.4f} equals syncbn's {report['test_accuracy']:.4f}")


def pytorch_to_syncbn(work, x, y, norm):
    torch.manual_seed(7)
    model = pytorch_twin.Twin("convnet", norm)
    x_train, y_train = pytorch_twin.load(DATA, "train")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for k in range(60):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x_train[32 * k:32 * (k + 1)]), y_train[32 * k:32 * (k + 1)]).backward()
        optimizer.step()
    logits = torch_logits(model, x)
    accuracy = float((logits.argmax(1) == y).float().mean())
    pt = os.path.join(work, f"torch-{norm}.pt")
    weights = os.path.join(work, f"torch-{norm}.safetensors")
    torch.save(model.state_dict(), pt)
    subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "tools", "state_dict_to_safetensors.py"), pt, weights],
                   check=True)
    label = "with BN" if norm else "without BN"
    logits_path = os.path.join(work, f"logits-{norm}.bin")
    report = json.loads(syncbn("eval", "--weights", weights, "--logits", logits_path))
    check(report["norm"] == ("bn" if norm else "none") and report["model"] == "convnet",
          f"{label}: syncbn eval recognized the model ({report['model']}, {report['norm']})")
    theirs = np.fromfile(logits_path, dtype="<f4").reshape(len(x), 10)
    diff = float(np.max(np.abs(logits.numpy() - theirs)))
    check(diff <= 1e-4, f"{label}: syncbn's logits of PyTorch-trained weights match PyTorch's (max |diff| {diff:.2e})")
    check(abs(report["test_accuracy"] - accuracy) < 5e-7,
          f"{label}: syncbn eval reports PyTorch's test accuracy {accuracy:.4f} (got {report['test_accuracy']:.4f})")
    if not norm:  # BN would move its running statistics in the training step
        out = syncbn("train", "--model", "convnet", "--norm", "none", "--init", weights, "--steps", "1",
                     "--lr", "1e-30", "--batch", "32")
        started = float(out.split("test accuracy ")[1].split("%")[0]) / 100
        check(abs(started - accuracy) < 5e-5,
              f"{label}: syncbn train --init starts from PyTorch's weights (accuracy {started:.4f} after one "
              f"step at lr 1e-30, PyTorch {accuracy:.4f})")


def main():
    torch.set_num_threads(1)
    x, y = test_set()
    with tempfile.TemporaryDirectory() as work:
        syncbn_to_pytorch(work, x, y)
        pytorch_to_syncbn(work, x, y, True)
        pytorch_to_syncbn(work, x, y, False)
    print(f"{len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
