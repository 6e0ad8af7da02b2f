#!/usr/bin/python3
"""Writes tests/golden/bn_golden.json: PyTorch's nn.BatchNorm{1,2,3}d, run in
float64, on float32-representable inputs, for every mode syncbn implements.

Run with Debian's python3-torch:  /usr/bin/python3 tests/golden/make_bn_golden.py
Each case is a layer and a sequence of steps; each step is one forward
(training or eval) and one backward with a given dy, with the gradients
zeroed before the step. Recorded per step: y, dx, grad_weight, grad_bias,
running_mean, running_var and num_batches_tracked after the step.
"""
import json
import os

import torch

torch.manual_seed(20261128)

SHAPES = {  # name: (module, full shape)
    "1d_nc": (torch.nn.BatchNorm1d, (7, 5)),
    "1d_ncl": (torch.nn.BatchNorm1d, (4, 3, 6)),
    "2d": (torch.nn.BatchNorm2d, (3, 4, 3, 5)),
    "3d": (torch.nn.BatchNorm3d, (2, 3, 2, 3, 4)),
}
MODES = [  # (name, affine, track_running_stats, momentum, eps)
    ("default", True, True, 0.1, 1e-5),
    ("momentum03_eps1e-3", True, True, 0.3, 1e-3),
    ("cumulative", True, True, None, 1e-5),
    ("no_affine", False, True, 0.1, 1e-5),
    ("untracked", True, False, 0.1, 1e-5),
    ("no_affine_untracked", False, False, 0.1, 1e-5),
]
STEPS = [True, True, False, True, False]  # training flags


def f32(t):
    """Rounds to float32 and back, so C gets exactly the same inputs."""
    return t.float().double()


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def flat_f32(t):
    """Float32 inputs: 9 significant digits identify a float32 exactly."""
    return [float(f"{v:.9g}") for v in t.detach().reshape(-1).tolist()]


def make_case(shape_name, module, shape, mode):
    name, affine, track, momentum, eps = mode
    channels = shape[1]
    layer = module(channels, eps=eps, momentum=momentum, affine=affine, track_running_stats=track).double()
    case = {"name": f"{shape_name}/{name}", "shape": list(shape), "channels": channels,
            "affine": affine, "track_running_stats": track, "cumulative": momentum is None,
            "momentum": 0.1 if momentum is None else momentum, "eps": eps, "steps": []}
    with torch.no_grad():
        if affine:
            layer.weight.copy_(f32(torch.rand(channels) + 0.5))
            layer.bias.copy_(f32(torch.randn(channels)))
    case["weight"] = flat_f32(layer.weight) if affine else []
    case["bias"] = flat_f32(layer.bias) if affine else []
    for training in STEPS:
        layer.train(training)
        x = f32(torch.randn(shape) * 2.0 + 0.5).requires_grad_(True)
        dy = f32(torch.randn(shape))
        if affine:
            layer.weight.grad = None
            layer.bias.grad = None
        y = layer(x)
        y.backward(dy)
        step = {"training": training, "x": flat_f32(x), "dy": flat_f32(dy), "y": flat(y), "dx": flat(x.grad)}
        if affine:
            step["grad_weight"] = flat(layer.weight.grad)
            step["grad_bias"] = flat(layer.bias.grad)
        if track:
            step["running_mean"] = flat(layer.running_mean)
            step["running_var"] = flat(layer.running_var)
            step["num_batches_tracked"] = int(layer.num_batches_tracked)
        case["steps"].append(step)
    return case


def main():
    cases = [make_case(sn, m, s, mode) for sn, (m, s) in SHAPES.items() for mode in MODES]
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bn_golden.json")
    with open(out, "w") as f:
        json.dump({"generator": "tests/golden/make_bn_golden.py", "torch": torch.__version__, "cases": cases}, f)
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main()
