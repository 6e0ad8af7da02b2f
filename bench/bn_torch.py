#!/usr/bin/python3
"""PyTorch's CPU batch norm on bench_bn's shapes, as a peer in the same run:
writes JSON lines {"shape", "layout", "threads", "pass", "allocator", "seconds"}
(best of R)
that `bench_bn --torch FILE` adds as a column. Backward calls the ATen kernel
directly (no autograd overhead), as the C benchmarks do. First come lines
starting with "# " (bench_bn skips them, bench/run.sh prints them): the PyTorch
version, the CPU capability its kernels dispatch to (from
torch.__config__.show(), set by ATEN_CPU_CAPABILITY), and the allocator in use
(jemalloc when bench/run.sh preloaded it).

  /usr/bin/python3 bench/bn_torch.py [--rounds R] > torch.jsonl
"""
import argparse
import json
import os
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


def jemalloc_path():
    """The jemalloc this process runs on if one is mapped (LD_PRELOAD), else None."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                if "jemalloc" in line:
                    return line.split()[-1]
    except OSError:
        pass
    return None


def notes():
    capability = [line.strip(" -") for line in torch.__config__.show().splitlines() if "CPU capability" in line]
    env = os.environ.get("ATEN_CPU_CAPABILITY")
    return [
        "PyTorch %s, %s%s" % (torch.__version__, capability[0] if capability else "CPU capability usage: unknown",
                              " (ATEN_CPU_CAPABILITY=%s)" % env if env else " (PyTorch's default dispatch)"),
        "PyTorch allocator: " + ("jemalloc (%s, MALLOC_CONF=%s)" % (jemalloc_path(), os.environ.get("MALLOC_CONF", ""))
                                 if jemalloc_path() else "glibc malloc (no jemalloc loaded)"),
    ]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--shape", help="one shape N,C,H,W instead of bench_bn's list")
    a = p.parse_args()
    for line in notes():
        print("# " + line, flush=True)
    allocator = "jemalloc" if jemalloc_path() else "glibc"
    shapes = [tuple(int(v) for v in a.shape.split(","))] if a.shape else SHAPES
    for shape in shapes:
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
                                          "allocator": allocator, "seconds": best_time(fn, a.rounds)}), flush=True)


if __name__ == "__main__":
    main()
