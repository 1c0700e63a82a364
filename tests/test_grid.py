"""The grid: config validation, failures recorded, resume, and a SIGKILL mid-grid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adue.cli import main
from adue.grid import grid_cells, load_grid_config, parse_grid_config, run_grid
from adue.runner import cell_path, read_cell

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(FIXTURES))
import fake_pipeline  # noqa: E402

BASE = {
    "profile": "quick",
    "backbones": ["minilm"],
    "datasets": ["sst2", "cola"],
    "seeds": [1, 2],
    "methods": ["sr", "md"],
}


def _toml(path: Path, results: Path, runs: Path, **extra) -> Path:
    lines = [
        'profile = "quick"',
        'backbones = ["minilm"]',
        'datasets = ["sst2", "cola"]',
        f"seeds = {extra.pop('seeds', [1, 2, 3])}",
        'methods = ["sr", "md"]',
        f'results_dir = "{results}"',
        f'runs_dir = "{runs}"',
    ]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("datasets", ["sst2", "imdb"], r"unknown dataset\(s\) \['imdb'\]. Valid datasets: .*20newsgroups"),
        ("backbones", ["bert-huge"], r"unknown backbone\(s\) \['bert-huge'\]. Valid backbones: minilm"),
        ("profile", "fast", r"unknown profile\(s\) \['fast'\]. Valid profiles: paper, cpu, quick"),
        ("methods", ["sr", "adue_x"], r"Unknown method variant\(s\) \['adue_x'\]. Valid variants: sr"),
        ("seeds", [1, -2], r"'seeds' must be a non-empty list of non-negative integers"),
        ("colour", "red", r"unknown key\(s\) \['colour'\]"),
    ],
)
def test_bad_names_in_config(key, value, message):
    raw = dict(BASE, **{key: value})
    with pytest.raises(ValueError, match=message):
        parse_grid_config(raw, "test.toml")


def test_bad_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("profile = \n", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_grid_config(bad)
    with pytest.raises(FileNotFoundError):
        load_grid_config(tmp_path / "missing.toml")
    missing = tmp_path / "m.toml"
    missing.write_text('profile = "cpu"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="lacks the required key 'datasets'"):
        load_grid_config(missing)


def test_shipped_configs():
    one = load_grid_config(REPO / "configs" / "grid-minilm-cpu.toml")
    assert one.profile == "cpu" and one.n_cells == 25 and one.backbones == ("minilm",)
    assert one.seeds == (1, 2, 3, 4, 5) and one.results_dir == Path("results")
    assert set(one.datasets) == {"cola", "20newsgroups", "sst2", "sst5", "toxigen"}
    four = load_grid_config(REPO / "configs" / "grid-cpu.toml")
    assert four.n_cells == 100 and four.backbones == ("minilm", "mpnet", "smollm2", "qwen")
    cells = grid_cells(one)
    assert [c.label() for c in cells[:2]] == ["minilm/cola/seed1", "minilm/20newsgroups/seed1"]
    assert cells[5].label() == "minilm/cola/seed2"  # seeds are the outer loop


def test_shipped_rows_resolve_their_caps_and_keep_their_committed_cells():
    """The SmolLM2 and MPNet rows run 20 Newsgroups under the profile's per-backbone caps, and
    every cell committed under ``results/`` for a shipped row still counts as finished (its
    recorded config is what the row resolves to today), so re-running a row redoes nothing."""
    from adue.grid import plan_cells
    from adue.runner import cell_is_finished
    from adue.variants import list_variants

    committed = 0
    for name, backbone in [("grid-minilm-cpu.toml", "minilm"), ("grid-smollm2-cpu.toml", "smollm2"),
                           ("grid-mpnet-cpu.toml", "mpnet")]:
        grid = load_grid_config(REPO / "configs" / name, results_dir=str(REPO / "results"))
        assert grid.n_cells == 25 and grid.backbones == (backbone,) and not grid.overrides
        assert set(grid.datasets) == {"cola", "20newsgroups", "sst2", "sst5", "toxigen"}
        for planned in plan_cells(grid):
            if planned.cell.dataset == "20newsgroups":
                assert planned.config.max_length == {"minilm": 256}.get(backbone, 128)
            if planned.path.is_file():
                committed += 1
                assert cell_is_finished(planned.path, planned.config, list_variants()), planned.path
    assert committed >= 25 + 13  # the MiniLM row and the SmolLM2 cells committed so far


# ------------------------------------------------------------------ in-process grid
def test_grid_records_failures_skips_finished_and_retries_failed(monkeypatch, tmp_path):
    counter = tmp_path / "count.txt"
    monkeypatch.setenv("ADUE_FAKE_COUNTER", str(counter))
    fake_pipeline.install(monkeypatch, fail_datasets=("cola",))
    grid = parse_grid_config(
        dict(BASE, results_dir=str(tmp_path / "res"), runs_dir=str(tmp_path / "runs"))
    )
    events = []
    summary = run_grid(grid, callback=events.append)
    assert summary.completed == ["minilm/sst2/seed1", "minilm/sst2/seed2"]
    assert summary.failed == ["minilm/cola/seed1", "minilm/cola/seed2"]
    failed = read_cell(cell_path(tmp_path / "res", "quick", "minilm", "cola", 1))
    assert failed["status"] == "failed" and "fake fine-tuning failure" in failed["error"]["message"]
    ends = [e for e in events if e["event"] == "cell_end"]
    assert [e["done"] for e in ends] == [1, 2, 3, 4] and ends[-1]["total"] == 4
    assert any(e["event"] == "stage" and e["stage"] == "methods:md" for e in events)
    # re-run: finished cells skipped (no fine-tuning), failed ones retried (and now succeed)
    fake_pipeline.install(monkeypatch)
    mtimes = {s: cell_path(tmp_path / "res", "quick", "minilm", "sst2", s).stat().st_mtime_ns
              for s in (1, 2)}
    again = run_grid(grid)
    assert again.skipped == ["minilm/sst2/seed1", "minilm/sst2/seed2"]
    assert again.completed == ["minilm/cola/seed1", "minilm/cola/seed2"]
    for s in (1, 2):
        assert cell_path(tmp_path / "res", "quick", "minilm", "sst2", s).stat().st_mtime_ns == mtimes[s]
    assert sorted(counter.read_text().splitlines()) == sorted(
        ["minilm/sst2/seed1", "minilm/sst2/seed2"] + ["minilm/cola/seed1", "minilm/cola/seed2"] * 2
    )


def test_grid_cli_dry_run(monkeypatch, tmp_path, capsys):
    cfg = _toml(tmp_path / "g.toml", tmp_path / "res", tmp_path / "runs", seeds=[1])
    assert main(["grid", str(cfg), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "1/2 minilm/sst2/seed1" in out and "to run" in out


# ------------------------------------------------------------------ SIGKILL and resume
_CHILD = (
    "import os, sys\n"
    "import fake_pipeline\n"
    "fake_pipeline.install(delay=float(os.environ['ADUE_FAKE_DELAY']))\n"
    "from adue.cli import main\n"
    "sys.exit(main(['grid', sys.argv[1]]))\n"
)


def _child(cfg: Path, counter: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(FIXTURES), env.get("PYTHONPATH")) if p)
    env["ADUE_FAKE_COUNTER"] = str(counter)
    env["ADUE_FAKE_DELAY"] = "0.8"
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(cfg)], env=env, cwd=str(cfg.parent),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def test_grid_killed_mid_run_resumes_without_redoing(tmp_path):
    res, runs, counter = tmp_path / "res", tmp_path / "runs", tmp_path / "count.txt"
    cfg = _toml(tmp_path / "grid.toml", res, runs)  # 2 datasets x 3 seeds = 6 cells
    proc = _child(cfg, counter)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        done = list(res.rglob("seed*.json"))
        if len(done) >= 2 or proc.poll() is not None:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, out
    finished = {p: p.read_bytes() for p in res.rglob("seed*.json")}
    assert 2 <= len(finished) < 6, out
    for p in finished:
        assert read_cell(p)["status"] == "complete"  # valid JSON, complete: never half-written
    mtimes = {p: p.stat().st_mtime_ns for p in finished}
    labels = {f"minilm/{p.parent.name}/{p.stem}" for p in finished}

    proc = _child(cfg, counter)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert f"{6 - len(finished)} completed, {len(finished)} already finished, 0 failed" in out
    cells = sorted(res.rglob("seed*.json"))
    assert len(cells) == 6
    for p in cells:
        assert read_cell(p)["status"] == "complete"
    for p, data in finished.items():  # nothing finished was redone
        assert p.read_bytes() == data and p.stat().st_mtime_ns == mtimes[p]
    calls = counter.read_text().splitlines()
    for label in labels:
        assert calls.count(label) == 1, (label, calls)
    assert len(set(calls)) == 6


def test_stale_temp_files_removed(tmp_path):
    from adue.grid import remove_stale_temp_files

    d = tmp_path / "cpu" / "minilm" / "sst2"
    d.mkdir(parents=True)
    old, fresh = d / ".seed1.json.abc.tmp", d / ".seed2.json.def.tmp"
    old.write_text("{", encoding="utf-8")
    fresh.write_text("{", encoding="utf-8")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert remove_stale_temp_files(tmp_path) == [old]
    assert fresh.exists() and not old.exists()


def test_grid_redoes_a_cell_whose_data_changed(monkeypatch, tmp_path):
    counter = tmp_path / "count.txt"
    monkeypatch.setenv("ADUE_FAKE_COUNTER", str(counter))
    fake_pipeline.install(monkeypatch)
    grid = parse_grid_config(dict(BASE, seeds=[1], results_dir=str(tmp_path / "res"),
                                  runs_dir=str(tmp_path / "runs")))
    assert run_grid(grid).completed == ["minilm/sst2/seed1", "minilm/cola/seed1"]
    assert run_grid(grid).skipped == ["minilm/sst2/seed1", "minilm/cola/seed1"]
    monkeypatch.setenv("ADUE_FAKE_DATA_VERSION", "2")  # both datasets edited
    again = run_grid(grid)
    assert again.completed == ["minilm/sst2/seed1", "minilm/cola/seed1"] and not again.skipped
    assert sorted(counter.read_text().splitlines()) == sorted(
        ["minilm/sst2/seed1", "minilm/cola/seed1"] * 2)
    cell = read_cell(cell_path(tmp_path / "res", "quick", "minilm", "sst2", 1))
    assert cell["data"]["fingerprint"] == fake_pipeline.fingerprint_of("sst2")
    assert any("other data" in w for w in cell["warnings"])  # the old run was moved aside


def test_grid_checks_every_option_before_any_cell(monkeypatch, tmp_path):
    counter = tmp_path / "count.txt"
    monkeypatch.setenv("ADUE_FAKE_COUNTER", str(counter))
    fake_pipeline.install(monkeypatch)
    raw = dict(BASE, methods=["sr", "adue"], results_dir=str(tmp_path / "res"),
               runs_dir=str(tmp_path / "runs"))
    with pytest.raises(ValueError, match=r"'search' parameter of AdUE"):
        run_grid(parse_grid_config(dict(raw, adue_search={"epoch": [1]})))
    with pytest.raises(ValueError, match="'device'"):
        run_grid(parse_grid_config(dict(raw, overrides={"device": "tpu"})))
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(NotADirectoryError, match="not a folder"):
        run_grid(parse_grid_config(dict(raw, results_dir=str(tmp_path / "file"))))
    assert not counter.exists() and not (tmp_path / "res").exists()


def test_dry_run_shows_finished_and_changed_data(monkeypatch, tmp_path, capsys):
    fake_pipeline.install(monkeypatch)
    cfg = _toml(tmp_path / "g.toml", tmp_path / "res", tmp_path / "runs", seeds=[1])
    assert main(["grid", str(cfg)]) == 0
    capsys.readouterr()
    assert main(["grid", str(cfg), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[:3] for line in out.splitlines()] == [
        ["1/2", "minilm/sst2/seed1", "finished"], ["2/2", "minilm/cola/seed1", "finished"]]
    monkeypatch.setenv("ADUE_FAKE_DATA_VERSION", "2")
    assert main(["grid", str(cfg), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[2:4] for line in out.splitlines()] == [["to", "redo"]] * 2
