"""AdUE head search: the paper's 144-config grid, batched vs one config at a time.

Synthetic features (d = 768, a Linear head, ~15 % errors), n = 5k and 50k training rows,
C = 2 and 20. Each row is measured in the same run:

- batched: ``AdUE(search="paper")`` (all configs trained together);
- sequential: the same ``fit`` with the one-config-at-a-time engine (``nn.Module`` +
  ``torch.optim.Adam`` + ``OneCycleLR`` per config). At n = 50k the sequential run is timed on
  every 12th config of the grid (12 configs, 120 of the grid's 1680 config-epochs) and
  extrapolated by its cost per config-epoch: such cells say "extrapolated". The agreement
  check (same selected config, same test ROC-AUC) needs both full runs and is made at n = 5k;
  at n = 50k the per-config validation ROC-AUCs of the timed subset are compared instead.

``--auto-grid`` measures instead the larger grid of ``loss="auto"`` (the ``adue_auto``
variant: beta = 0 added and L2-SP as a sum or a mean, 324 configs) against today's paper grid
(144 configs), both batched, at C = 2 and 20 and one n (``--n``, default 5000), in the same run.

Times are CPU seconds of this process (``time.process_time``), with wall seconds in brackets:
on a shared machine the CPU time is what the work costs, the wall time also counts waiting for
other processes. With one torch thread (``--threads 1``) the two agree on an idle machine.

Usage::

    .venv/bin/python benchmarks/bench_head_search.py [--quick] [--threads N]
    .venv/bin/python benchmarks/bench_head_search.py --auto-grid [--n 5000] [--threads N]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from adue.features import Features
from adue.methods._adue_train import TrainConfig
from adue.methods.adue_head import AdUE

D = 768
N_VAL = 2000
N_TEST = 5000
SUBSET_STEP = 12  # sequential subset at large n: configs 0, 12, 24, ... of the grid


def _data(n: int, c: int, seed: int, w: np.ndarray, w_true: np.ndarray) -> Features:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, D)).astype(np.float32)
    logits = z @ w.T
    noisy = z @ w_true.T + rng.gumbel(size=(n, c)) * 0.7
    return Features(z, logits, noisy.argmax(1))


def make_problem(n: int, c: int, seed: int = 0):
    """Train/val/test features from one Linear head that disagrees in part with the labels."""
    rng = np.random.default_rng(1000 + c)
    w = (rng.normal(size=(c, D)) * (2.5 / math.sqrt(D))).astype(np.float32)
    w_true = w + (rng.normal(size=(c, D)) * (1.0 / math.sqrt(D))).astype(np.float32)
    head = nn.Linear(D, c, bias=True)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(w))
        head.bias.zero_()
    train = _data(n, c, seed + 1, w, w_true)
    val = _data(N_VAL, c, seed + 2, w, w_true)
    test = _data(N_TEST, c, seed + 3, w, w_true)
    return head, train, val, test


class _Subset(AdUE):
    """AdUE restricted to given configs of the paper grid (benchmark only)."""

    def __init__(self, *, configs: list, **kw) -> None:
        super().__init__(**kw)
        self._configs = configs

    def _grid(self):
        return list(self._configs)


def _fit(engine: str, head, train, val, configs=None, loss: str = "full") -> tuple[AdUE, float, float]:
    """Fit and time it: (method, CPU seconds of this process, wall seconds)."""
    m = (
        AdUE(head=head, search="paper", loss=loss)
        if configs is None
        else _Subset(head=head, search="paper", configs=configs)
    )
    m._engine = engine
    c0, w0 = time.process_time(), time.perf_counter()
    m.fit(train, val)
    return m, time.process_time() - c0, time.perf_counter() - w0


def _auc(m: AdUE, test: Features) -> float:
    return float(roc_auc_score(test.errors(), m.uncertainty(test)))


def _key(r: dict) -> tuple:
    return (r["lr"], r["epochs"], r["alpha"], r["beta"], r["l2sp"])


def head_search_rows(quick: bool = False) -> list[dict]:
    """One dict per (n, C): timings, ratio and agreement of batched vs sequential search.

    ``quick`` uses n = 1k and 5k (sequential subset at 5k) instead of 5k and 50k.
    """
    sizes = (1000, 5000) if quick else (5000, 50000)
    rows = []
    for c in (2, 20):
        for n in sizes:
            head, train, val, test = make_problem(n, c)
            batched, t_b, w_b = _fit("batched", head, train, val)
            grid = batched._grid()
            full = n == sizes[0]
            row = {
                "n": n,
                "C": c,
                "error_rate": float(train.errors().mean()),
                "batched_cpu_s": t_b,
                "batched_wall_s": w_b,
                "test_auc_batched": _auc(batched, test),
                "test_auc_sr": float(roc_auc_score(test.errors(), 1 - test.probabilities().max(1))),
                "threads": torch.get_num_threads(),
            }
            if full:
                seq, t_s, w_s = _fit("sequential", head, train, val)
                row.update(
                    sequential_cpu_s=t_s,
                    sequential_wall_s=w_s,
                    extrapolated=False,
                    same_config="yes" if seq.best_params_ == batched.best_params_ else "no",
                    test_auc_sequential=_auc(seq, test),
                    configs_compared=len(grid),
                )
                b_res, s_res = batched.search_results_, seq.search_results_
            else:
                subset = grid[::SUBSET_STEP]
                seq, t_sub, w_sub = _fit("sequential", head, train, val, subset)
                ep_full = sum(cfg.epochs for cfg in grid)
                ep_sub = sum(cfg.epochs for cfg in subset)
                row.update(
                    sequential_cpu_s=t_sub * ep_full / ep_sub,
                    sequential_wall_s=w_sub * ep_full / ep_sub,
                    sequential_subset_cpu_s=t_sub,
                    sequential_subset_wall_s=w_sub,
                    extrapolated=True,
                    same_config="n/a",
                    test_auc_sequential=math.nan,
                    configs_compared=len(subset),
                )
                by_key = {_key(r): r for r in batched.search_results_}
                s_res = seq.search_results_
                b_res = [by_key[_key(r)] for r in s_res]
            row["max_val_auc_diff"] = max(
                abs(a["roc_auc"] - b["roc_auc"]) for a, b in zip(b_res, s_res, strict=True)
            )
            row["ratio_cpu"] = row["sequential_cpu_s"] / row["batched_cpu_s"]
            row["ratio_wall"] = row["sequential_wall_s"] / row["batched_wall_s"]
            row["best_params"] = batched.best_params_
            rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    head = (
        "| n | C | batched CPU s (wall) | sequential CPU s (wall) | ratio CPU (wall) | "
        "same config | test ROC-AUC batched | test ROC-AUC sequential | "
        "max val ROC-AUC diff (configs) | test ROC-AUC SR |\n"
        "|---:|---:|---:|---:|---:|:---:|---:|---:|---:|---:|\n"
    )
    lines = []
    for r in rows:
        seq = f"{r['sequential_cpu_s']:.1f} ({r['sequential_wall_s']:.1f})"
        if r["extrapolated"]:
            seq += (
                f" extrapolated from {r['sequential_subset_cpu_s']:.1f} "
                f"({r['sequential_subset_wall_s']:.1f}) on {r['configs_compared']} configs"
            )
        auc_s = "n/a" if math.isnan(r["test_auc_sequential"]) else f"{r['test_auc_sequential']:.4f}"
        lines.append(
            f"| {r['n']} | {r['C']} | {r['batched_cpu_s']:.1f} ({r['batched_wall_s']:.1f}) | "
            f"{seq} | "
            f"{r['ratio_cpu']:.1f}x ({r['ratio_wall']:.1f}x) | {r['same_config']} | "
            f"{r['test_auc_batched']:.4f} | {auc_s} | "
            f"{r['max_val_auc_diff']:.1e} ({r['configs_compared']}) | {r['test_auc_sr']:.4f} |"
        )
    return head + "\n".join(lines)


def auto_grid_rows(n: int) -> list[dict]:
    """One dict per C: batched fit times of the paper grid and of the ``loss="auto"`` grid."""
    rows = []
    warm = make_problem(200, 2)  # first-call costs (thread pools, kernels) off the clock
    _fit("batched", warm[0], warm[1], warm[2], configs=[TrainConfig(1e-3, 1, 0.0, 0.0)])
    for c in (2, 20):
        head, train, val, test = make_problem(n, c)
        paper, t_p, w_p = _fit("batched", head, train, val)
        auto, t_a, w_a = _fit("batched", head, train, val, loss="auto")
        rows.append({
            "n": n, "C": c, "configs_paper": len(paper.search_results_),
            "configs_auto": len(auto.search_results_), "paper_cpu_s": t_p, "paper_wall_s": w_p,
            "auto_cpu_s": t_a, "auto_wall_s": w_a, "ratio_cpu": t_a / t_p, "ratio_wall": w_a / w_p,
            "test_auc_paper": _auc(paper, test), "test_auc_auto": _auc(auto, test),
            "best_auto": auto.best_params_, "threads": torch.get_num_threads(),
        })
    return rows


def auto_markdown(rows: list[dict]) -> str:
    head = (
        "| n | C | paper grid: configs, CPU s (wall) | auto grid: configs, CPU s (wall) | "
        "ratio CPU (wall) | test ROC-AUC paper | test ROC-AUC auto | auto chosen |\n"
        "|---:|---:|---:|---:|---:|---:|---:|:---|\n"
    )
    lines = [
        f"| {r['n']} | {r['C']} | {r['configs_paper']}, {r['paper_cpu_s']:.1f} "
        f"({r['paper_wall_s']:.1f}) | {r['configs_auto']}, {r['auto_cpu_s']:.1f} "
        f"({r['auto_wall_s']:.1f}) | {r['ratio_cpu']:.2f}x ({r['ratio_wall']:.2f}x) | "
        f"{r['test_auc_paper']:.4f} | {r['test_auc_auto']:.4f} | "
        + ", ".join(f"{k}={v}" for k, v in r["best_auto"].items()) + " |"
        for r in rows
    ]
    return head + "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="n = 1k and 5k instead of 5k and 50k")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--auto-grid", action="store_true",
                    help="time the loss='auto' grid against the paper grid instead")
    ap.add_argument("--n", type=int, default=5000, help="training rows for --auto-grid")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.auto_grid:
        print(auto_markdown(auto_grid_rows(args.n)))
        print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} thread(s)")
        return
    rows = head_search_rows(quick=args.quick)
    print(markdown(rows))
    print()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); chosen configs:")
    for r in rows:
        print(f"  n={r['n']} C={r['C']} error rate {r['error_rate']:.3f}: {r['best_params']}")


if __name__ == "__main__":
    main()
