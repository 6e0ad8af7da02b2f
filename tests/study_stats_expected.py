#!/usr/bin/python3
"""Writes tests/study_stats_expected.json: the statistics of `syncbn study`
(tools/statistics.c) computed independently with numpy, for
tests/test_study_stats.c to compare against.

Independent on purpose: numpy's mean, std(ddof=1) and median; the smoothed
curve and the spike ratio by direct slicing; Welch's t and df from their
textbook formulas; and the two-sided p-value by numerical integration of
Student's t density (composite Gauss-Legendre on the tail, after the change
of variable x = |t| / u), not by the incomplete-beta continued fraction the
C code uses. (scipy is not installed here.)

Usage: /usr/bin/python3 tests/study_stats_expected.py  (rewrites the JSON beside it)
"""
import json
import math
import os

import numpy as np

WINDOW = 50        # SBN_FINAL_LOSS_STEPS: the final loss, the smoothing, the spike's median
SPIKE_HISTORY = 10


def t_two_sided_p(t, df):
    """P(|T| >= |t|) = 2 * integral from |t| to inf of the t density, with x = |t| / u, u in (0, 1]."""
    t = abs(float(t))
    if t == 0.0:
        return 1.0
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    nodes, weights = np.polynomial.legendre.leggauss(40)
    edges = np.linspace(0.0, 1.0, 401)
    total = 0.0
    for a, b in zip(edges[:-1], edges[1:]):
        u = 0.5 * (b - a) * nodes + 0.5 * (a + b)
        x = t / u
        density = np.exp(log_c - (df + 1) / 2 * np.log1p(x * x / df))
        total += 0.5 * (b - a) * np.sum(weights * density * t / (u * u))
    return float(2.0 * total)


def welch(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    return {"a": a.tolist(), "b": b.tolist(), "difference": float(a.mean() - b.mean()), "t": float(t),
            "df": float(df), "p": t_two_sided_p(t, df)}


def trailing_mean(x, window):
    return [float(np.mean(x[max(0, k + 1 - window):k + 1])) for k in range(x.size)]


def largest_spike(x, window, history):
    best = None
    for k in range(history, x.size):
        previous = x[max(0, k - window):k]
        previous = previous[np.isfinite(previous)]
        if not np.isfinite(x[k]) or previous.size == 0:
            continue
        median = np.median(previous)
        if median > 0:
            ratio = x[k] / median
            best = ratio if best is None else max(best, ratio)
    return None if best is None else float(best)


def sample_case(name, x, thresholds=()):
    x = np.asarray(x, float)
    smooth = trailing_mean(x, WINDOW)
    first_below = {}
    for threshold in thresholds:
        below = [k for k, v in enumerate(smooth) if v < threshold]
        first_below[repr(threshold)] = below[0] if below else -1
    return {
        "name": name, "x": x.tolist(), "mean": float(np.mean(x)),
        "sd": float(np.std(x, ddof=1)) if x.size >= 2 else None,
        "median": float(np.median(x)),
        "tail_mean_50": float(np.mean(x[-WINDOW:])), "tail_mean_7": float(np.mean(x[-7:])),
        "sd_last_half": float(np.std(x[x.size // 2:], ddof=1)) if x.size >= 4 else None,
        "largest_spike": largest_spike(x, WINDOW, SPIKE_HISTORY),
        "trailing_mean_50": smooth,
        "first_below_smoothed": first_below,
    }


def main():
    rng = np.random.default_rng(20240611)
    samples = [
        sample_case("two", [0.25, 0.75]),
        sample_case("five", rng.normal(0, 1, 5)),
        sample_case("thirteen", rng.normal(3, 2, 13)),
        sample_case("offset_1e6", 1e6 + rng.normal(0, 1e-3, 40)),  # the sd of numbers near a large mean
        sample_case("uniform_100", rng.uniform(0, 1, 100)),
    ]
    # A training-loss-like curve: decay, noise, two spikes.
    steps = np.arange(300)
    loss = 2.3 * np.exp(-steps / 40.0) + 0.3 + 0.05 * rng.standard_normal(300)
    loss[120] *= 4.0
    loss[250] *= 2.5
    samples.append(sample_case("loss_curve", loss, thresholds=(1.0, 0.6, 0.35, 0.1)))

    welch_cases = [
        welch([0.8921, 0.8906, 0.8930], [0.8625, 0.8701, 0.8590]),  # accuracies over 3 seeds
        welch([0.8921, 0.8906, 0.8930], [0.8919, 0.8934, 0.8902]),
        welch(rng.normal(0, 1, 5), rng.normal(0.5, 3, 8)),
        welch(rng.normal(10, 0.1, 2), rng.normal(10.2, 0.3, 3)),
        welch(rng.normal(0, 1, 30), rng.normal(0.3, 1, 30)),
        welch([1, 2, 3, 4], [2, 4, 6, 8, 10, 12]),
    ]
    p_table = [{"t": t, "df": df, "p": t_two_sided_p(t, df)}
               for t in (0.1, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0)
               for df in (1.0, 1.5, 2.0, 2.7, 4.0, 10.0, 30.0, 100.0)]
    out = {
        "generator": "tests/study_stats_expected.py (numpy %s)" % np.__version__,
        "window": WINDOW, "spike_history": SPIKE_HISTORY,
        "samples": samples, "welch": welch_cases, "t_p": p_table,
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "study_stats_expected.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
