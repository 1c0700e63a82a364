"""``adue predict`` throughput against ``transformers.pipeline("text-classification")``.

Same model (MiniLM with a 2-class head, save_pretrained), same texts (SST-2 and 20 Newsgroups
test rows mixed, shuffled), same batch size, same thread count, same max length, measured in
this one run. Each side runs in its own fresh subprocess, so "peak RSS" is that process's
maximum resident memory (ru_maxrss) and load time is measured from a cold start of the
library objects (the OS file cache is warm for both).

- adue: ``UncertainClassifier.load(BUNDLE)`` (hashes checked) then
  :func:`adue.cli.predict_cmd.predict_stream` over the texts (chunked, length-batched),
  writing JSONL to a file -- exactly what ``adue predict BUNDLE --input F --output O`` does.
- baseline: ``pipeline("text-classification", model=CKPT)(texts, batch_size=B,
  truncation=True, max_length=L)`` with ``top_k=None`` (all class probabilities, as adue).

Labels must agree on every text. The bundle's method is AdUE with one config (``search=None``);
the method's cost at predict time is one small head over z.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_predict.py --n 5000 --threads 1``
(``--data-dir``, ``--batch-size``, ``--repeats``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from adue.data import resolve_data_dir

ROOT = Path(__file__).resolve().parents[1]


def _data_dir(arg: str | None) -> str:
    """SST-2's data folder, found by the library's one resolver (``--data-dir``, then
    ``$ADUE_DATA_DIR``, then a ``shared/data`` folder above the repository)."""
    d = resolve_data_dir(arg, name="sst2", start=ROOT)
    if d is None or not (Path(d) / "sst2" / "train.tsv").is_file():
        raise SystemExit(f"SST-2 not found under {d}; pass --data-dir or set ADUE_DATA_DIR")
    return str(d)


def prepare(work: Path, data_dir: str, n: int, seed: int) -> dict:
    """Checkpoint, bundle and the mixed text file; returns their paths and counts."""
    import numpy as np
    import torch

    from adue.backbones import load_backbone
    from adue.classifier import UncertainClassifier
    from adue.data import load_dataset

    torch.manual_seed(seed)
    model, tok = load_backbone("minilm", 2)
    model.config.id2label, model.config.label2id = {0: "negative", 1: "positive"}, {"negative": 0, "positive": 1}
    ckpt = work / "ckpt"
    model.save_pretrained(ckpt)
    tok.save_pretrained(ckpt)
    bundle = work / "bundle"
    UncertainClassifier.fit(ckpt, "sst2", data_dir=data_dir, max_rows=400, method="adue",
                            method_params={"search": None, "epochs": 3}, coverage=0.9).save(bundle)
    sst = list(load_dataset("sst2", data_dir)["test"]["text"])
    news = list(load_dataset("20newsgroups", data_dir)["test"]["text"])
    rng = np.random.default_rng(seed)
    half = n // 2
    texts = [sst[i] for i in rng.choice(len(sst), half, replace=half > len(sst))]
    texts += [news[i] for i in rng.choice(len(news), n - half, replace=False)]
    texts = [texts[i] for i in rng.permutation(n)]
    src = work / "texts.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return {"ckpt": str(ckpt), "bundle": str(bundle), "texts": str(src), "n_sst2": half, "n_20news": n - half}


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(kind: str, paths: dict, batch_size: int, threads: int, out: str) -> dict:
    import torch

    torch.set_num_threads(threads)
    texts = [json.loads(line)["text"] for line in Path(paths["texts"]).read_text(encoding="utf-8").splitlines()]
    t0 = time.perf_counter()
    if kind == "adue":
        from adue.classifier import UncertainClassifier
        from adue.cli.predict_cmd import iter_inputs, predict_stream

        clf = UncertainClassifier.load(paths["bundle"], device="cpu", batch_size=batch_size)
        load_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        with open(paths["texts"], "rb") as src, open(out, "w", encoding="utf-8") as fh:
            predict_stream(clf, iter_inputs(src, paths["texts"], "jsonl"), fh)
        run_s = time.perf_counter() - t1
        labels = [json.loads(line)["label"] for line in Path(out).read_text().splitlines()]
        max_length = clf.loaded.max_length
    else:
        from transformers import pipeline

        max_length = json.loads((Path(paths["bundle"]) / "bundle.json").read_text())["tokenizer"]["max_length"]
        pipe = pipeline("text-classification", model=paths["ckpt"], device="cpu", top_k=None)
        load_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        res = pipe(texts, batch_size=batch_size, truncation=True, max_length=max_length)
        run_s = time.perf_counter() - t1
        labels = [max(r, key=lambda d: d["score"])["label"] for r in res]
    return {"kind": kind, "n": len(texts), "load_s": load_s, "run_s": run_s, "texts_per_s": len(texts) / run_s,
            "peak_rss_mib": _peak_mib(), "labels": labels, "max_length": max_length}


def _spawn(kind: str, paths: dict, args: argparse.Namespace, work: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--paths", json.dumps(paths), "--batch-size",
           str(args.batch_size), "--threads", str(args.threads), "--out", str(work / f"{kind}.jsonl")]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1, help="alternating runs of each side; best kept")
    ap.add_argument("--data-dir")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--paths", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, json.loads(args.paths), args.batch_size, args.threads, args.out)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths = prepare(work, _data_dir(args.data_dir), args.n, args.seed)
        runs: dict[str, list[dict]] = {"pipeline": [], "adue": []}
        for _ in range(args.repeats):
            for kind in ("pipeline", "adue"):
                runs[kind].append(_spawn(kind, paths, args, work))
    best = {k: max(v, key=lambda r: r["texts_per_s"]) for k, v in runs.items()}
    same = sum(a == b for a, b in zip(best["adue"]["labels"], best["pipeline"]["labels"], strict=True))
    base = best["pipeline"]["texts_per_s"]
    print(f"texts: {args.n} ({paths['n_sst2']} SST-2 + {paths['n_20news']} 20 Newsgroups test rows), "
          f"batch {args.batch_size}, {args.threads} thread(s), max_length {best['adue']['max_length']}, "
          f"best of {args.repeats}")
    print("| side | texts/s | ratio | load s | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|")
    for kind in ("pipeline", "adue"):
        r = best[kind]
        print(f"| {kind} | {r['texts_per_s']:.1f} | {r['texts_per_s'] / base:.2f}x | {r['load_s']:.2f} | "
              f"{r['peak_rss_mib']:.0f} |")
    print(f"identical labels: {same}/{args.n}")


if __name__ == "__main__":
    main()
