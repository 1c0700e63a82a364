"""Benchmark of the uncertainty methods on synthetic features (d = 768).

Prints markdown tables, every row measured in this run, each in its own subprocess so that its
peak memory (``VmHWM`` of that process: data, libraries and the method) is its own:

- RDE: fit + score time and peak memory, exact kernel PCA vs the Nystroem approximation, at
  n = 5k / 20k / 54k training rows (exact only where the n x n kernel fits; skipped rows say
  why); ROC-AUC of both paths at 5k, their difference and the scores' rank correlation.
- MD / RMD: fit + score at n = 54k, against a reference built from scikit-learn's
  ``EmpiricalCovariance`` (one ``mahalanobis`` call per class) measured in the same run.
- The AdUE head search, when ``benchmarks/bench_head_search.py`` provides
  ``head_search_rows(quick)``.

Usage::

    .venv/bin/python benchmarks/bench_methods.py            # full run (several minutes)
    .venv/bin/python benchmarks/bench_methods.py --quick    # smaller sizes (about a minute)
    .venv/bin/python benchmarks/bench_methods.py --no-head-search
    .venv/bin/python benchmarks/bench_methods.py --sections md --features RUN_DIR  # MD/RMD only

Data (``make_synthetic``): two Gaussian classes with means of norm 2, a 32-dimensional
low-rank within-class structure plus isotropic noise (std 0.4); a "hard" subpopulation
(2% of train, 10% of test) shifted by 4 along a fixed direction with random labels; logits
from the nearest-mean linear classifier. About 5% of train and 8% of test rows are
misclassified, partly near the class boundary and partly in the shifted region.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TEST_ROWS = 5000
GIB = 2**30


def make_synthetic(
    n: int, d: int = 768, n_classes: int = 2, seed: int = 0, hard_frac: float = 0.02
):
    """Synthetic split with real structure (see the module docstring); returns Features."""
    from adue.features import Features

    geo = np.random.default_rng(12345)  # geometry shared by every split
    rank = 32
    means = geo.standard_normal((n_classes, d)) * (2.0 / np.sqrt(d))
    mix = geo.standard_normal((d, rank)) * (np.linspace(1.0, 0.1, rank) / np.sqrt(rank))
    direction = geo.standard_normal(d)
    direction /= np.linalg.norm(direction)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    z = means[labels] + rng.standard_normal((n, rank)) @ mix.T
    z += 0.4 * rng.standard_normal((n, d))
    hard = rng.random(n) < hard_frac
    z[hard] += 4.0 * direction
    labels[hard] = rng.integers(0, n_classes, int(hard.sum()))
    logits = 4.0 * (z @ means.T - 0.5 * (means**2).sum(axis=1))
    return Features(z.astype(np.float32), logits.astype(np.float32), labels)


# ------------------------------------------------------------------ child
def _proc_status_mib(key: str) -> float:
    """``VmRSS`` (current) or ``VmHWM`` (peak) of this process, MiB, from /proc/self/status.

    ``VmHWM`` belongs to the address space, which ``exec`` renews, so unlike ``ru_maxrss``
    (kept across ``exec`` on Linux) it does not inherit the parent's peak.
    """
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def _sklearn_md(train, test) -> np.ndarray:
    """Reference MD: EmpiricalCovariance on class-centred rows, one mahalanobis call per class."""
    from sklearn.covariance import EmpiricalCovariance

    z = train.z.astype(np.float64)
    mus = np.stack([z[train.labels == c].mean(axis=0) for c in range(train.num_classes)])
    ec = EmpiricalCovariance(assume_centered=True).fit(z - mus[train.labels])
    zt = test.z.astype(np.float64)
    return np.min([ec.mahalanobis(zt - mu) for mu in mus], axis=0)


def _child(spec: dict) -> dict:
    """Run one row: load the data, fit, score; report times, memory and ROC-AUC."""
    from sklearn.metrics import roc_auc_score

    from adue.features import Features
    from adue.methods import get_method

    data = np.load(spec["data"])
    train = Features(data["z"], data["logits"], data["labels"])
    test_data = np.load(spec["test"])
    test = Features(test_data["z"], test_data["logits"], test_data["labels"])
    del data, test_data
    # Warm-up on a small subset: first-call imports are not part of the measurement.
    small = train.subset(np.arange(min(300, train.n)))
    if spec["method"] == "md-sklearn":
        _sklearn_md(small, small)
    else:
        warm = dict(spec.get("params", {}), **({"n_components": 4} if spec["method"] == "rde" else {}))
        get_method(spec["method"], **warm).fit(small).uncertainty(small)
    m = None if spec["method"] == "md-sklearn" else get_method(spec["method"], **spec.get("params", {}))
    rss_before = _proc_status_mib("VmRSS")
    t0 = time.perf_counter()
    if m is None:
        u = _sklearn_md(train, test)
        t1 = t0  # fit and score are not separable in the reference
    else:
        m.fit(train)
        t1 = time.perf_counter()
        u = m.uncertainty(test)
    t2 = time.perf_counter()
    if spec.get("scores"):
        np.save(spec["scores"], u)
    out = {
        "fit_s": t1 - t0,
        "score_s": t2 - t1,
        "total_s": t2 - t0,
        "peak_rss_mib": _proc_status_mib("VmHWM"),
        "rss_before_mib": rss_before,
        "roc_auc": float(roc_auc_score(test.errors(), u)),
    }
    if spec["method"] == "rde":
        out["path"] = m.kernel_approx_
        out["support_fraction"] = m.support_fraction_
        out["mcd_rows"] = m.mcd_n_samples_
    return out


# ----------------------------------------------------------------- parent
def _run_child(spec: dict, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark row {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _save_split(features, path: Path) -> str:
    np.savez(path, z=features.z, logits=features.logits, labels=features.labels)
    return str(path)


def _fmt(x, digits=2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _head_search_section(quick: bool) -> str:
    path = HERE / "bench_head_search.py"
    if not path.is_file():
        return "Head search: benchmarks/bench_head_search.py not found; no head-search rows."
    spec = importlib.util.spec_from_file_location("bench_head_search", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if not hasattr(mod, "head_search_rows"):
        return "Head search: bench_head_search.py defines no head_search_rows(quick); no rows."
    rows = mod.head_search_rows(quick)
    if hasattr(mod, "markdown"):
        return mod.markdown(rows)
    keys = list(rows[0]) if rows else []
    return _table(keys, [[r.get(k) for k in keys] for r in rows])


def _rde_section(args, data: dict, test_path: str, tmp: Path, exact_n: int,
                 rde_sizes: tuple[int, ...]) -> None:
    """RDE rows: exact kernel PCA vs Nystroem at each size, plus seed-1 repeats."""
    exact_fits = {exact_n}  # above this the n x n kernel and its O(n^3) eigh do not fit
    rde_rows = []
    results = {}
    for n in rde_sizes:
        for path in ("exact", "nystroem"):
            base = {"method": "rde", "data": data[n], "test": test_path,
                    "params": {"kernel_approx": path}}
            if path == "exact" and n not in exact_fits:
                gb = 8 * n * n / 1e9
                why = (f"skipped: the n x n kernel alone is {gb:.1f} GB and the dense eigh is "
                       f"O(n^3), about {(n / exact_n) ** 3:.0f}x the {exact_n}-row time")
                if args.quick:
                    why = "skipped in --quick"
                rde_rows.append([f"rde {path}", n, None, None, None, None, None, None, None, why])
                continue
            spec = dict(base, scores=str(tmp / f"rde_{path}_{n}.npy"))
            r = _run_child(spec, args.timeout)
            results[(path, n)] = r
            rde_rows.append([f"rde {path}", n, r["fit_s"], r["score_s"], r["total_s"], None,
                             r["peak_rss_mib"], r["peak_rss_mib"] - r["rss_before_mib"],
                             r["roc_auc"], f"MCD on {r['mcd_rows']} rows, support "
                             f"fraction {r['support_fraction']}"])
    # Seed-to-seed variability of each path at the exact size (MCD subsets; landmarks),
    # the yardstick for the exact-vs-Nystroem difference.
    for path in ("exact", "nystroem"):
        spec = {"method": "rde", "data": data[exact_n], "test": test_path,
                "params": {"kernel_approx": path, "random_state": 1},
                "scores": str(tmp / f"rde_{path}_{exact_n}_seed1.npy")}
        r = _run_child(spec, args.timeout)
        results[(path + "-seed1", exact_n)] = r
        rde_rows.append([f"rde {path}, random_state=1", exact_n, r["fit_s"], r["score_s"],
                         r["total_s"], None, r["peak_rss_mib"],
                         r["peak_rss_mib"] - r["rss_before_mib"], r["roc_auc"],
                         f"MCD on {r['mcd_rows']} rows, support fraction {r['support_fraction']}"])
    base_t = results[("exact", exact_n)]["total_s"]
    for row in rde_rows:
        if row[4] is not None:
            row[5] = f"{base_t / row[4]:.2f}x"
    from scipy.stats import spearmanr

    def scores(name):
        return np.load(tmp / f"rde_{name}.npy")

    def rho(a, b):
        return spearmanr(scores(a), scores(b)).statistic

    e, a = results[("exact", exact_n)], results[("nystroem", exact_n)]
    e1, a1 = results[("exact-seed1", exact_n)], results[("nystroem-seed1", exact_n)]
    print("## RDE: exact kernel PCA vs Nystroem (fit on n rows, score 5000 test rows)\n")
    print(_table(["method", "n train", "fit s", "score s", "total s",
                  f"speed vs exact@{exact_n}", "peak RSS MiB", "RSS growth MiB", "ROC-AUC",
                  "notes"], rde_rows))
    k = exact_n
    print(f"\nAt n = {k}: ROC-AUC exact {e['roc_auc']:.4f}, Nystroem {a['roc_auc']:.4f}, "
          f"difference {a['roc_auc'] - e['roc_auc']:+.4f} (seed 1: exact {e1['roc_auc']:.4f}, "
          f"Nystroem {a1['roc_auc']:.4f}, difference {a1['roc_auc'] - e1['roc_auc']:+.4f}).")
    print(f"Spearman correlation of the test scores: exact vs Nystroem "
          f"{rho(f'exact_{k}', f'nystroem_{k}'):.3f}; exact seed 0 vs seed 1 "
          f"{rho(f'exact_{k}', f'exact_{k}_seed1'):.3f}; Nystroem seed 0 vs seed 1 "
          f"{rho(f'nystroem_{k}', f'nystroem_{k}_seed1'):.3f}.")
    big = results.get(("nystroem", max(rde_sizes)))
    if big is not None and not args.quick:
        ok = big["total_s"] < 30 and big["peak_rss_mib"] * 2**20 < 2 * GIB
        print(f"Target (54k rows in < 30 s and < 2 GiB): {big['total_s']:.1f} s, "
              f"{big['peak_rss_mib'] / 1024:.2f} GiB peak -> {'met' if ok else 'NOT met'}.")


def _md_section(args, data: dict, test_path: str, md_n: int) -> None:
    """MD / RMD rows against the sklearn EmpiricalCovariance reference."""
    md_rows = []
    ref = _run_child({"method": "md-sklearn", "data": data[md_n], "test": test_path}, args.timeout)
    md_rows.append(["md (sklearn EmpiricalCovariance reference)", md_n, None, None,
                    ref["total_s"], "1.00x", ref["peak_rss_mib"],
                    ref["peak_rss_mib"] - ref["rss_before_mib"], ref["roc_auc"]])
    for name, params in (("md", {}), ("rmd", {}), ("md", {"l2_normalize": True}),
                         ("rmd", {"l2_normalize": True})):
        r = _run_child({"method": name, "params": params, "data": data[md_n], "test": test_path},
                       args.timeout)
        label = name + (" (l2)" if params else "")
        md_rows.append([label, md_n, r["fit_s"], r["score_s"], r["total_s"],
                        f"{ref['total_s'] / r['total_s']:.2f}x", r["peak_rss_mib"],
                        r["peak_rss_mib"] - r["rss_before_mib"], r["roc_auc"]])
    print(f"\n## MD / RMD (fit on {md_n} rows, score 5000 test rows)\n")
    print(_table(["method", "n train", "fit s", "score s", "total s", "speed vs reference",
                  "peak RSS MiB", "RSS growth MiB", "ROC-AUC"], md_rows))


def _floored_inverse(cov: np.ndarray, eps: float) -> np.ndarray:
    """The pre-fix regularisation: eigenvalues floored at ``eps`` x this covariance's largest."""
    lam, vec = np.linalg.eigh((cov + cov.T) / 2.0)
    return (vec / np.maximum(lam, eps * lam[-1])) @ vec.T


def _md_rmd_formula(train, test, l2: bool, inverse) -> tuple[np.ndarray, np.ndarray]:
    """MD and RMD from the paper's formulas (numpy, float64) with the given inverse."""
    def prep(z):
        z = np.asarray(z, dtype=np.float64)
        return z / np.linalg.norm(z, axis=1, keepdims=True) if l2 else z

    z, x, y = prep(train.z), prep(test.z), train.labels
    mus = np.stack([z[y == c].mean(axis=0) for c in range(train.num_classes)])
    p = inverse((z - mus[y]).T @ (z - mus[y]) / len(z))
    p0 = inverse(np.cov(z.T, bias=True))
    md = np.stack([np.einsum("nd,de,ne->n", x - m, p, x - m) for m in mus], axis=1).min(axis=1)
    x0 = x - z.mean(axis=0)
    return md, md - np.einsum("nd,de,ne->n", x0, p0, x0)


def _real_features_section(run_dir: str) -> None:
    """MD / RMD on a run folder's extracted features: adue vs the exact formula and the old floor."""
    from scipy.stats import spearmanr

    from adue.features import load_features
    from adue.methods import get_method
    from adue.metrics import roc_auc

    train, test = load_features(run_dir, "train"), load_features(run_dir, "test")
    errors = test.errors()
    rows = []
    for l2 in (False, True):
        exact = _md_rmd_formula(train, test, l2, np.linalg.inv)
        old = _md_rmd_formula(train, test, l2, lambda c: _floored_inverse(c, 1e-6))
        for i, name in enumerate(("md", "rmd")):
            u = get_method(name, l2_normalize=l2).fit(train).uncertainty(test)
            rows.append([name + ("_l2" if l2 else ""), roc_auc(u, errors), roc_auc(exact[i], errors),
                         roc_auc(old[i], errors), spearmanr(u, exact[i]).statistic,
                         spearmanr(old[i], exact[i]).statistic])
    print(f"## MD / RMD on real features ({run_dir}: {train.n} train rows, d = {train.dim}, "
          f"{test.n} test rows, {int(errors.sum())} errors)\n")
    print(_table(["variant", "adue ROC-AUC", "exact formula", "old floor (1e-6 x own max)",
                  "Spearman adue vs exact", "Spearman old vs exact"],
                 [[r[0], *(f"{v:.4f}" for v in r[1:])] for r in rows]))
    print()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (d = 256)")
    ap.add_argument("--no-head-search", action="store_true", help="skip the AdUE head-search rows")
    ap.add_argument("--sections", default="rde,md,head-search",
                    help="comma list of sections to run: rde, md, head-search (default: all)")
    ap.add_argument("--features", metavar="RUN_DIR",
                    help="also score MD / RMD on this run folder's extracted features against "
                         "the exact formula and the old per-covariance floor")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per row")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return
    sections = {x.strip() for x in args.sections.split(",") if x.strip()}
    unknown = sections - {"rde", "md", "head-search"}
    if unknown:
        ap.error(f"unknown section(s) {sorted(unknown)}; choose from rde, md, head-search")

    d = 256 if args.quick else 768
    exact_n = 2000 if args.quick else 5000
    rde_sizes = (2000, 5000) if args.quick else (5000, 20000, 54000)
    md_n = 10000 if args.quick else 54000

    import sklearn
    import threadpoolctl

    blas = [f"{i['internal_api']} {i['num_threads']} threads" for i in threadpoolctl.threadpool_info()]
    print(f"# adue method benchmark ({'quick' if args.quick else 'full'})")
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, scikit-learn "
        f"{sklearn.__version__}; {os.cpu_count()} CPUs; load average at start "
        f"{os.getloadavg()[0]:.1f}; BLAS: {', '.join(blas)}"
    )
    print(f"synthetic data: d = {d}, 2 classes, test split {TEST_ROWS} rows\n")
    if args.features:
        _real_features_section(args.features)

    with tempfile.TemporaryDirectory(prefix="adue-bench-") as tmp:
        tmp = Path(tmp)
        test_path = _save_split(make_synthetic(TEST_ROWS, d, seed=999, hard_frac=0.10), tmp / "test.npz")
        sizes = (set(rde_sizes) if "rde" in sections else set()) | ({md_n} if "md" in sections else set())
        data = {n: _save_split(make_synthetic(n, d, seed=n), tmp / f"train_{n}.npz") for n in sorted(sizes)}
        if "rde" in sections:
            _rde_section(args, data, test_path, tmp, exact_n, rde_sizes)
        if "md" in sections:
            _md_section(args, data, test_path, md_n)

    print("\n## Head search\n")
    if args.no_head_search or "head-search" not in sections:
        print("Head search: skipped (--no-head-search or --sections).")
    else:
        print(_head_search_section(args.quick))


if __name__ == "__main__":
    main()
