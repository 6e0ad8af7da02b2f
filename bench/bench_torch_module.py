#!/usr/bin/python3
"""syncbn's PyTorch modules against torch.nn's, on CPU, in one run.

Times a training step of the module as a user runs it, forward + backward through
autograd (y = m(x); y.backward(dy)), for
  - torch.nn.BatchNorm2d                      (PyTorch's CPU kernel)
  - syncbn.torch.BatchNorm2d                  (libsyncbn through ctypes)
  - syncbn.torch.SyncBatchNorm at P = 1       (Communicator.self(): the SyncBN path, one rank)
on bench/bench_bn.c's shapes, NCHW and channels_last, at 1 and 2 threads. The
contenders are interleaved call by call within each round; best and median of R
rounds. Each thread count runs in its own subprocess with OMP_NUM_THREADS=T (which
sizes libsyncbn's OpenMP pool when the library loads) and torch.set_num_threads(T).
libjemalloc.so.2 is preloaded into those subprocesses when it is installed (PyTorch's
usual allocator advice; it then serves both contenders); the output says whether it was.

  PYTHONPATH=python /usr/bin/python3 bench/bench_torch_module.py [--rounds R] [--threads 1,2] [--quick]

Prints a Markdown table; ratios are time ratios (< 1: the first is faster).
"""
import argparse
import ctypes.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time

SHAPES = [(32, 64, 56, 56), (32, 256, 14, 14), (8, 16, 32, 32), (256, 64, 8, 8), (128, 512, 7, 7),
          (4096, 1024, 1, 1)]
QUICK_SHAPES = [(8, 16, 32, 32), (64, 32, 1, 1)]
CONTENDERS = ["pytorch", "syncbn", "syncbn_p1"]


def jemalloc():
    for path in ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
                 "/usr/lib/libjemalloc.so.2", "/usr/local/lib/libjemalloc.so.2"):
        if os.path.exists(path):
            return path
    name = ctypes.util.find_library("jemalloc")
    return name if name and os.path.isabs(name) else None


def worker(threads, rounds, quick):
    import torch
    from torch import nn

    import syncbn.torch as sbn
    from syncbn.mpi import Communicator

    torch.set_num_threads(threads)
    comm = Communicator.self()
    for shape in QUICK_SHAPES if quick else SHAPES:
        channels = shape[1]
        for layout, fmt in (("NCHW", torch.contiguous_format), ("NHWC", torch.channels_last)):
            generator = torch.Generator().manual_seed(0)
            x = torch.randn(shape, generator=generator).contiguous(memory_format=fmt).requires_grad_()
            dy = torch.randn(shape, generator=generator).contiguous(memory_format=fmt)
            modules = {"pytorch": nn.BatchNorm2d(channels), "syncbn": sbn.BatchNorm2d(channels),
                       "syncbn_p1": sbn.SyncBatchNorm(channels, comm=comm)}

            def step(module):
                x.grad = None
                start = time.perf_counter()
                module(x).backward(dy)
                return time.perf_counter() - start

            # warm-up, and a check that the contenders compute the same thing
            outputs = {}
            for name, module in modules.items():
                step(module)
                outputs[name] = (module(x).detach(), x.grad.clone())
            for name in ("syncbn", "syncbn_p1"):
                for ours, theirs in zip(outputs[name], outputs["pytorch"]):
                    difference = float((ours - theirs).abs().max()) / float(theirs.abs().max())
                    if difference > 1e-4:
                        raise SystemExit(f"{name} differs from PyTorch on {shape} {layout}: {difference:.1e}")
            times = {name: [] for name in modules}
            for _ in range(rounds):
                for name, module in modules.items():  # interleaved: each round times every contender
                    times[name].append(step(module))
            print(json.dumps({"shape": list(shape), "layout": layout, "threads": threads,
                              "best": {k: min(v) for k, v in times.items()},
                              "median": {k: statistics.median(v) for k, v in times.items()}}), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=31)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        worker(a.worker, a.rounds, a.quick)
        return
    preload = jemalloc()
    rows = []
    for threads in [int(t) for t in a.threads.split(",")]:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS="1")
        if preload:
            env["LD_PRELOAD"] = (preload + " " + env.get("LD_PRELOAD", "")).strip()
        command = [sys.executable, os.path.abspath(__file__), "--worker", str(threads), "--rounds", str(a.rounds)]
        done = subprocess.run(command + (["--quick"] if a.quick else []), env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"worker for {threads} threads failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        rows += [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    import torch
    print(f"syncbn.torch vs torch.nn BatchNorm2d, training forward + backward through autograd, CPU; "
          f"PyTorch {torch.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs "
          f"({platform.processor() or platform.machine()}, load average {os.getloadavg()[0]:.2f}); "
          f"best and median of {a.rounds} interleaved rounds")
    print(f"allocator: {'jemalloc preloaded (' + preload + ')' if preload else 'glibc malloc (libjemalloc.so.2 is not installed)'}")
    print()
    print("| shape (N,C,H,W) | layout | threads | PyTorch ms best / median | syncbn BN ms best / median | "
          "SyncBN P=1 ms best / median | BN / PyTorch | SyncBN P=1 / BN |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        best, median = r["best"], r["median"]
        cells = [f"{1e3 * best[k]:.3f} / {1e3 * median[k]:.3f}" for k in CONTENDERS]
        print(f"| {'x'.join(map(str, r['shape']))} | {r['layout']} | {r['threads']} | {' | '.join(cells)} | "
              f"{best['syncbn'] / best['pytorch']:.2f} | {best['syncbn_p1'] / best['syncbn']:.2f} |")
    print()
    print("Ratios are of the best times; < 1 means the first is faster.")


if __name__ == "__main__":
    main()
