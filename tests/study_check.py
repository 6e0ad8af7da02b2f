#!/usr/bin/python3
"""Checks what `syncbn study` wrote (study_outputs.sh, study_resume.sh) and
what `syncbn compare` writes about smoothing (compare_smoothing.sh).

  study_check.py study OUT LOG RUNS CELLS   every output file, with the expected structure
  study_check.py records OUT RUNS           runs.jsonl: RUNS records, one per key, all in study.json
  study_check.py compare OUT                steps.csv's smoothing and the final train loss

Standard library only (json, csv, statistics)."""
import csv
import json
import math
import os
import re
import statistics
import sys

WINDOW = 50  # SBN_FINAL_LOSS_STEPS
failures = []


def check(condition, message):
    if not condition:
        failures.append(message)


def close(a, b, relative=1e-6, absolute=1e-9):
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= absolute + relative * abs(b)


def steps_of(path):
    """The per-step losses and seconds, the evaluations and the final line of a metrics file."""
    losses, seconds, evals, final = [], [], [], None
    for line in open(path):
        record = json.loads(line)
        if record.get("final"):
            final = record
        elif record.get("eval"):
            evals.append(record)
        else:
            losses.append(record["loss"])
            seconds.append(record["seconds"])
    return losses, seconds, evals, final


def smoothed(losses):
    return [statistics.fmean(losses[max(0, k + 1 - WINDOW):k + 1]) for k in range(len(losses))]


def check_records(out, runs):
    study = json.load(open(os.path.join(out, "study.json")))
    keys = []
    for line in open(os.path.join(out, "runs.jsonl")):
        if line.strip():
            keys.append(json.loads(line)["key"])  # every line parses: none torn, none glued
    check(len(keys) == runs, f"runs.jsonl: {len(keys)} records, want {runs}")
    check(len(set(keys)) == len(keys), f"runs.jsonl: {len(keys) - len(set(keys))} runs recorded twice")
    planned = {r["key"] for r in study["runs"]}
    check(planned == set(keys), "runs.jsonl's keys are not study.json's runs")
    check(len(study["runs"]) == runs, f"study.json: {len(study['runs'])} runs, want {runs}")


def check_study(out, log, runs, cells):
    names = ["runs.jsonl", "study.json", "study.csv", "study.md", "study_accuracy.png", "study_stability.png"]
    for name in names:
        check(os.path.isfile(os.path.join(out, name)), f"{name} is missing")
    for name in ("study_accuracy.png", "study_stability.png"):
        path = os.path.join(out, name)
        check(os.path.isfile(path) and open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n", f"{name} is not a PNG")
    if failures:
        return
    check_records(out, runs)
    study = json.load(open(os.path.join(out, "study.json")))
    for key in ("config", "definitions", "runs", "cells", "comparisons"):
        check(key in study, f"study.json lacks {key}")
    config = study["config"]
    for key in ("per_rank_batches", "lr_stress", "ranks", "seeds", "loss_threshold", "accuracy_level", "alpha",
                "eval_points"):
        check(key in config, f"config lacks {key}")
    run_fields = ("key", "files", "per_rank_batch", "lr_factor", "norm", "seed", "ranks", "global_batch", "lr",
                  "steps", "test_accuracy", "test_loss", "best_test_loss", "final_train_loss", "steps_to_loss",
                  "seconds_to_loss", "steps_to_accuracy", "seconds_to_accuracy", "loss_sd_last_half",
                  "largest_spike", "diverged", "running_mean_spread", "ms_per_step", "wall_seconds")
    for r in study["runs"]:
        missing = [f for f in run_fields if f not in r]
        check(not missing, f"run {r.get('key')}: lacks {missing}")
        if missing:
            continue
        metrics = os.path.join(out, "runs", r["files"] + ".jsonl")
        check(os.path.isfile(os.path.join(out, "runs", r["files"] + ".log")), f"{r['files']}.log is missing")
        losses, seconds, evals, final = steps_of(metrics)
        check(final is not None and len(losses) == r["steps"], f"{metrics}: {len(losses)} steps, record {r['steps']}")
        check(len(evals) == config["eval_points"], f"{metrics}: {len(evals)} evaluations, want {config['eval_points']}")
        # The same definition everywhere: the final train loss is the mean of the last 50 steps.
        want = statistics.fmean(losses[-WINDOW:])
        check(close(r["final_train_loss"], want), f"{r['files']}: final train loss {r['final_train_loss']}, "
              f"mean of the last {WINDOW} steps {want}")
        curve = smoothed(losses)
        below = [k for k, v in enumerate(curve) if v < config["loss_threshold"]]
        check(r["steps_to_loss"] == (below[0] + 1 if below else None),
              f"{r['files']}: steps to loss {r['steps_to_loss']}, want {below[0] + 1 if below else None}")
        check(close(r["loss_sd_last_half"], statistics.stdev(losses[len(losses) // 2:])), f"{r['files']}: loss sd")
        reached = [e["step"] for e in evals if e["test_accuracy"] >= config["accuracy_level"]]
        if not reached and r["test_accuracy"] >= config["accuracy_level"]:
            reached = [r["steps"]]
        check(r["steps_to_accuracy"] == (reached[0] if reached else None), f"{r['files']}: steps to accuracy")
        check(r["diverged"] == (not (r["test_accuracy"] >= 0.15) or not all(map(math.isfinite, losses))),
              f"{r['files']}: diverged flag")
        if r["norm"] in ("one", "sync"):
            check(r["running_mean_spread"] == 0, f"{r['files']}: {r['norm']} with running_mean spread "
                  f"{r['running_mean_spread']}")
        else:
            check(r["running_mean_spread"] > 0, f"{r['files']}: plain BN with running_mean spread 0")
    check(len(study["cells"]) == cells, f"study.json: {len(study['cells'])} cells, want {cells}")
    for c in study["cells"]:
        mine = [r for r in study["runs"] if r["per_rank_batch"] == c["per_rank_batch"] and
                r["lr_factor"] == c["lr_factor"] and r["norm"] == c["norm"]]
        accuracies = [r["test_accuracy"] for r in mine]
        check(c["runs"] == len(mine) == config["seeds"], f"cell {c}: {len(mine)} runs")
        check(close(c["test_accuracy_mean"], statistics.fmean(accuracies), 1e-12), f"cell {c}: accuracy mean")
        check(close(c["test_accuracy_sd"], statistics.stdev(accuracies), 1e-9, 1e-12), f"cell {c}: accuracy sd")
        check(c["diverged"] == sum(r["diverged"] for r in mine), f"cell {c}: diverged count")
    check(len(study["comparisons"]) == 2 * cells // 3, f"{len(study['comparisons'])} comparisons")
    for v in study["comparisons"]:
        for measure in ("test_accuracy", "loss_sd_last_half"):
            w = v[measure]
            check(w["verdict"] in ("within noise", "lower", "higher", "n/a"), f"verdict {w['verdict']}")
            check(w["p"] is None or 0 <= w["p"] <= 1, f"p {w['p']}")
            check(w["verdict"] != "within noise" or w["p"] >= config["alpha"], f"{v}: within noise with p < alpha")
    rows = list(csv.DictReader(open(os.path.join(out, "study.csv"))))
    check(len(rows) == cells, f"study.csv: {len(rows)} rows, want {cells}")
    check([r["norm"] for r in rows] == ["one", "plain", "sync"] * (cells // 3), "study.csv: norms out of order")
    check(all(len(r) == 31 for r in rows), "study.csv: rows of other than 31 columns")
    text = open(log).read()
    table = [line for line in text.splitlines() if line.startswith("| ") and "|---" not in line]
    check(len(table) == cells + 1, f"the printed table has {len(table) - 1} rows, want {cells}")
    check("Welch's two-sided t-test" in text and "alpha = " in text, "the report does not name its test")
    progress = re.findall(r"^\[(\d+)/(\d+)\] .* seed \d+: test acc .* elapsed .* left$", text, re.M)
    check(len(progress) == runs, f"{len(progress)} progress lines, want {runs}")
    check(open(os.path.join(out, "study.md")).read() in text, "study.md is not what was printed")


def check_compare(out):
    summary = json.load(open(os.path.join(out, "summary.json")))
    rows = list(csv.DictReader(open(os.path.join(out, "steps.csv"))))
    check(rows and "smooth_a" in rows[0] and "smooth_c" in rows[0], "steps.csv lacks the smooth_* columns")
    script = open(os.path.join(out, "compare.gp")).read()
    check("bezier" not in script and "using 1:7" in script, "compare.gp does not plot the smoothed columns")
    for run, column in (("a", "a"), ("b", "b"), ("c", "c")):
        losses = [float(r["loss_" + column]) for r in rows]
        curve = smoothed(losses)
        worst = max(abs(float(r["smooth_" + column]) - s) / abs(s) for r, s in zip(rows, curve))
        check(worst < 1e-7, f"steps.csv smooth_{column} is not the mean of the last {WINDOW} steps ({worst:.3g})")
        final = next(s["final_train_loss"] for s in summary if s["run"] == run)
        check(close(final, statistics.fmean(losses[-WINDOW:])), f"run {run}: final train loss {final} is not the "
              f"mean of the last {WINDOW} steps")
        check(close(final, float(rows[-1]["smooth_" + column])), f"run {run}: the curve does not end at the final loss")


def main():
    mode = sys.argv[1]
    if mode == "study":
        check_study(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    elif mode == "records":
        check_records(sys.argv[2], int(sys.argv[3]))
    elif mode == "compare":
        check_compare(sys.argv[2])
    for f in failures:
        print("FAIL:", f)
    print(f"{mode}: {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
