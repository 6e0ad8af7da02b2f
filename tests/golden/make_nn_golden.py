#!/usr/bin/python3
"""Writes tests/golden/nn_golden.json: the syncbn models (seed, convnet; with
BN and without) built in PyTorch float64, two SGD steps (momentum, weight
decay) on a small batch. Recorded: the initial parameters in syncbn's flat
order (per layer: weight, then bias), per step the loss, the logits, the flat
gradients, the parameters after the step and BN running statistics.

Run with Debian's python3-torch:  /usr/bin/python3 tests/golden/make_nn_golden.py
"""
import json
import os

import torch
import torch.nn as nn

torch.manual_seed(7)
N, C_IN, H, W, CLASSES = 6, 2, 8, 8, 10
LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 1e-3


def block(c_in, c_out, norm):
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1)]
    if norm:
        layers.append(nn.BatchNorm2d(c_out))
    return layers + [nn.ReLU(), nn.MaxPool2d(2)]


def build(kind, norm):
    layers = block(C_IN, 16, norm)
    if kind == "convnet":
        layers += block(16, 32, norm)
        features = 32 * (H // 4) * (W // 4)
    else:
        features = 16 * (H // 2) * (W // 2)
    layers += [nn.Flatten(), nn.Linear(features, CLASSES)]
    return nn.Sequential(*layers).double()


def flat(tensors):
    """10 significant digits: far below the float32 tolerances the C test uses."""
    return [float(f"{v:.10g}") for t in tensors for v in t.detach().reshape(-1).tolist()]


def f32(t):
    return t.float().double()


def make_case(kind, norm):
    model = build(kind, norm)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(f32(p))  # start from float32-representable values
    params = list(model.parameters())  # per layer: weight, then bias
    case = {"name": f"{kind}/{'bn' if norm else 'none'}", "model": kind, "norm": norm,
            "n": N, "in_channels": C_IN, "height": H, "width": W, "classes": CLASSES,
            "lr": LR, "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY,
            "initial_params": [float(f"{v:.9g}") for p in params for v in p.detach().reshape(-1).tolist()], "steps": []}
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    model.train()
    for _ in range(2):
        x = f32(torch.randn(N, C_IN, H, W))
        labels = torch.randint(0, CLASSES, (N,))
        optimizer.zero_grad()
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, labels)
        loss.backward()
        grads = flat([p.grad for p in params])
        optimizer.step()
        bns = [m for m in model if isinstance(m, nn.BatchNorm2d)]
        case["steps"].append({
            "x": [float(f"{v:.9g}") for v in x.reshape(-1).tolist()],
            "labels": labels.tolist(), "loss": float(loss), "logits": flat([logits]),
            "grads": grads, "params_after": flat(params),
            "running_mean": flat([b.running_mean for b in bns]), "running_var": flat([b.running_var for b in bns])})
    return case


def main():
    cases = [make_case(kind, norm) for kind in ("seed", "convnet") for norm in (True, False)]
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nn_golden.json")
    with open(out, "w") as f:
        json.dump({"generator": "tests/golden/make_nn_golden.py", "torch": torch.__version__, "cases": cases}, f)
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main()
