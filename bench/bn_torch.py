#!/usr/bin/python3
"""PyTorch's CPU batch norm on bench_bn's shapes, as a peer in the same run:
writes JSON lines {"shape", "layout", "threads", "pass", "seconds"} (best of R)
that `bench_bn --torch FILE` adds as a column. Backward calls the ATen kernel
directly (no autograd overhead), as the C benchmarks do.

  /usr/bin/python3 bench/bn_torch.py [--rounds R] > torch.jsonl
"""
import argparse
import json
import time

import torch

SHAPES = [(32, 64, 56, 56), (32, 256, 14, 14), (8, 16, 32, 32), (256, 64, 8, 8), (128, 512, 7, 7), (4096, 1024, 1, 1)]


def best_time(fn, rounds):
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=15)
    a = p.parse_args()
    for shape in SHAPES:
        for layout in ("NCHW", "NHWC"):
            for threads in (1, 2):
                torch.set_num_threads(threads)
                fmt = torch.channels_last if layout == "NHWC" else torch.contiguous_format
                x = torch.randn(shape).contiguous(memory_format=fmt)
                dy = torch.randn(shape).contiguous(memory_format=fmt)
                c = shape[1]
                weight, bias = torch.ones(c), torch.zeros(c)
                rm, rv = torch.zeros(c), torch.ones(c)
                _, save_mean, save_invstd = torch.native_batch_norm(x, weight, bias, rm, rv, True, 0.1, 1e-5)
                passes = {
                    "fwd-train": lambda: torch.native_batch_norm(x, weight, bias, rm, rv, True, 0.1, 1e-5),
                    "bwd-train": lambda: torch.ops.aten.native_batch_norm_backward(
                        dy, x, weight, rm, rv, save_mean, save_invstd, True, 1e-5, [True, True, True]),
                    "fwd-eval": lambda: torch.native_batch_norm(x, weight, bias, rm, rv, False, 0.1, 1e-5),
                }
                with torch.no_grad():
                    for name, fn in passes.items():
                        print(json.dumps({"shape": list(shape), "layout": layout, "threads": threads, "pass": name,
                                          "seconds": best_time(fn, a.rounds)}), flush=True)


if __name__ == "__main__":
    main()
