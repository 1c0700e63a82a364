"""Executors of the grid: submitit (its local executor: real subprocess jobs) and a local Ray
cluster run the same 3-cell grid as the in-process loop and write the same cell JSONs; a cell
whose worker is killed is recorded and redone; finished cells are not submitted again; the
Slurm job array's sbatch script (submitit's own) is checked with a stand-in ``sbatch``.

Cells use the fast fake pipeline of tests/fixtures (synthetic features; real methods, metrics
and cell JSONs). Workers are other processes: they find it through PYTHONPATH and install it
in the executor's ``setup`` hook.
"""

from __future__ import annotations

import functools
import os
import pickle
import signal
import sys
from pathlib import Path

import pytest

from adue.cli import main
from adue.executors import MissingExtraError, execute_grid, parse_executor_config
from adue.grid import GridSummary, parse_grid_config
from adue.runner import cell_path, read_cell

FIXTURES = Path(__file__).parent / "fixtures"
TESTS = Path(__file__).parent
sys.path.insert(0, str(FIXTURES))
import fake_pipeline  # noqa: E402

DATASETS = ["sst2", "cola", "sst5"]
LABELS = [f"minilm/{d}/seed1" for d in DATASETS]
KILLED = "minilm/sst5/seed1"


def _grid(tmp_path: Path, name: str, executor: dict | None = None):
    raw = {
        "profile": "quick", "backbones": ["minilm"], "datasets": DATASETS, "seeds": [1],
        "methods": ["sr", "md"],
        "results_dir": str(tmp_path / name / "res"), "runs_dir": str(tmp_path / name / "runs"),
    }
    if executor is not None:
        raw["executor"] = executor
    return parse_grid_config(raw, f"{name}.toml")


def _install_killing(kill: str, marker: str) -> None:
    """Worker setup: the fake pipeline, and SIGKILL of this worker the first time ``kill`` is
    fine-tuned (``marker`` remembers it): a worker killed mid-cell."""
    fake_pipeline.install()
    import adue.runner as runner

    inner = runner._finetune

    def finetune(cfg, run_dir, data_dir, progress):
        if f"{cfg.backbone}/{cfg.dataset}/seed{cfg.seed}" == kill and not os.path.exists(marker):
            Path(marker).write_text(str(os.getpid()), encoding="utf-8")
            os.kill(os.getpid(), signal.SIGKILL)
        return inner(cfg, run_dir, data_dir, progress)

    runner._finetune = finetune


@pytest.fixture
def worker_env(monkeypatch, tmp_path):
    """Workers import the fixtures and this module; each fine-tuning call adds a counter line.
    This process, which plans the grid (reading each cell's data fingerprint to decide what is
    finished), sees the same fake pipeline as its workers."""
    fake_pipeline.install(monkeypatch)
    paths = [str(FIXTURES), str(TESTS), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    counter = tmp_path / "count.txt"
    monkeypatch.setenv("ADUE_FAKE_COUNTER", str(counter))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return counter


def _cells(grid) -> dict[str, dict]:
    return {f"minilm/{d}/seed1": read_cell(cell_path(grid.results_dir, "quick", "minilm", d, 1))
            for d in DATASETS}


def _same_results(a: dict, b: dict) -> None:
    assert a["status"] == b["status"] == "complete"
    assert a["config"] == b["config"]
    assert set(a["methods"]) == set(b["methods"]) == {"sr", "md"}
    for name in a["methods"]:
        assert a["methods"][name]["status"] == "ok", a["methods"][name]
        assert a["methods"][name]["metrics"] == b["methods"][name]["metrics"], name
    for key in ("accuracy", "n_rows", "n_errors", "curves"):
        assert a[key] == b[key], key


@pytest.fixture
def local_cells(monkeypatch, tmp_path):
    """The reference: the same grid on the local executor (in this process), 1 thread."""
    grid = _grid(tmp_path, "local", {"name": "local", "threads": 1})
    with monkeypatch.context() as m:
        fake_pipeline.install(m)
        m.setenv("ADUE_FAKE_COUNTER", str(tmp_path / "local-count.txt"))
        summary = execute_grid(grid)
    assert summary.completed == LABELS and not summary.failed
    return _cells(grid)


def _run_killed_then_resumed(tmp_path, counter, name, executor, **kw):
    grid = _grid(tmp_path, name, executor)
    marker = tmp_path / f"{name}-killed.txt"
    first = execute_grid(grid, setup=functools.partial(_install_killing, KILLED, str(marker)), **kw)
    assert marker.exists(), "the worker of the killed cell never started"
    assert isinstance(first, GridSummary)
    assert first.failed == [KILLED] and sorted(first.completed) == sorted(set(LABELS) - {KILLED})
    lost = read_cell(cell_path(grid.results_dir, "quick", "minilm", "sst5", 1))
    assert lost["status"] == "failed" and lost["error"]["stage"] == "worker", lost["error"]
    finished = {p: p.stat().st_mtime_ns for p in Path(grid.results_dir).rglob("seed1.json")
                if read_cell(p)["status"] == "complete"}
    assert len(finished) == 2
    again = execute_grid(grid, setup=functools.partial(fake_pipeline.install), **kw)
    assert again.completed == [KILLED] and sorted(again.skipped) == sorted(set(LABELS) - {KILLED})
    assert not again.failed and again.total == 3 and again.cell_seconds > 0
    for p, mtime in finished.items():  # finished cells were not run (nor written) again
        assert p.stat().st_mtime_ns == mtime
    calls = counter.read_text(encoding="utf-8").splitlines()
    assert sorted(calls) == sorted(LABELS), calls  # the killed attempt died before its line
    return grid


# ------------------------------------------------------------------ submitit, real subprocesses
def test_submitit_jobs_match_local_and_killed_cell_is_redone(tmp_path, worker_env, local_cells):
    executor = {"name": "slurm", "threads": 1,
                "slurm": {"gpus_per_node": 0, "cpus_per_task": 1, "time": 10}}
    grid = _run_killed_then_resumed(tmp_path, worker_env, "submitit", executor,
                                    slurm_cluster="local", poll_s=0.2)
    cells = _cells(grid)
    for label in LABELS:
        _same_results(cells[label], local_cells[label])
    # the job logs sit in the hidden folder beside the results; the re-run submitted one cell
    logs = Path(grid.results_dir) / ".slurm"
    submissions = sorted(logs.glob("*_cells.json"), key=lambda p: p.stat().st_mtime_ns)
    assert [len(_read_json(p)) for p in submissions] == [3, 1]
    assert _read_json(submissions[-1])[0]["cell"] == KILLED
    # everything finished: nothing is submitted at all
    n_logs = len(list(logs.iterdir()))
    final = execute_grid(grid, slurm_cluster="local", poll_s=0.2)
    assert sorted(final.skipped) == sorted(LABELS) and not final.completed
    assert len(list(logs.iterdir())) == n_logs


def _read_json(path: Path) -> list:
    import json

    return json.loads(path.read_text(encoding="utf-8"))


# ------------------------------------------------------------------ Ray, local cluster, 2 CPUs
def test_ray_tasks_match_local_and_killed_cell_is_redone(tmp_path, worker_env, local_cells):
    import ray

    assert not ray.is_initialized()
    executor = {"name": "ray", "threads": 1, "max_parallel": 2,
                "ray": {"num_cpus": 1, "num_gpus": "auto", "local_num_cpus": 2}}
    grid = _run_killed_then_resumed(tmp_path, worker_env, "ray", executor)
    assert not ray.is_initialized()  # the local cluster started for the grid was shut down
    cells = _cells(grid)
    for label in LABELS:
        _same_results(cells[label], local_cells[label])


# ------------------------------------------------------------------ the Slurm job array
_SBATCH = """#!/bin/sh
n=$(cat "{dir}/next-id" 2>/dev/null || echo 4242)
echo $((n + 1)) > "{dir}/next-id"
cp "$1" "{dir}/sbatch-$n.sh"
echo "Submitted batch job $n"
"""
_SQUEUE = """#!/bin/sh
echo 4242_1
echo 4242_2
echo 99_3
"""


def test_slurm_job_array_script(tmp_path, monkeypatch, capsys):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "sbatch").write_text(_SBATCH.format(dir=tmp_path), encoding="utf-8")
    (bindir / "srun").write_text("#!/bin/sh\nexit 1\n", encoding="utf-8")  # never run here
    (bindir / "squeue").write_text("#!/bin/sh\n", encoding="utf-8")  # nothing in the queue
    for tool in ("sbatch", "srun", "squeue"):
        (bindir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    res = tmp_path / "res"
    cfg = tmp_path / "grid.toml"
    cfg.write_text(
        'profile = "quick"\nbackbones = ["minilm"]\ndatasets = ["sst2", "cola", "sst5"]\n'
        f'seeds = [1]\nmethods = ["sr"]\nresults_dir = "{res}"\nruns_dir = "{tmp_path / "runs"}"\n'
        '[executor]\nname = "local"\n'
        '[executor.slurm]\npartition = "gpu"\ntime = "02:30:00"\ngpus_per_node = 2\n'
        'cpus_per_task = 6\nmem_gb = 30\nsetup = ["module load cuda/12.4"]\n'
        '[executor.slurm.extra]\naccount = "nlp"\nqos = "high"\n',
        encoding="utf-8",
    )
    assert main(["grid", str(cfg), "--executor", "slurm", "--max-parallel", "2"]) == 0
    err = capsys.readouterr().err
    assert "submitted 3 cell(s) to Slurm as job array 4242 (0 of 3 finished before" in err, err
    assert "squeue -j 4242" in err and f"adue grid {cfg} --dry-run" in err
    script = (tmp_path / "sbatch-4242.sh").read_text(encoding="utf-8")
    logs = res / ".slurm"
    for line in (
        "#SBATCH --array=0-2%2", "#SBATCH --partition=gpu", "#SBATCH --time=150",
        "#SBATCH --gpus-per-node=2", "#SBATCH --cpus-per-task=6", "#SBATCH --mem=30GB",
        "#SBATCH --account=nlp", "#SBATCH --qos=high", "#SBATCH --job-name=adue-grid",
        f"#SBATCH --output={logs}/%A_%a/%A_%a_0_log.out", "module load cuda/12.4",
        f"-u -m submitit.core._submit {logs}/%j",
    ):
        assert line in script, (line, script)
    # one pickled task per array index, each the right cell with the grid's absolute paths
    index = _read_json(logs / "4242_cells.json")
    assert [e["cell"] for e in index] == LABELS and [e["job_id"] for e in index] == [
        "4242_0", "4242_1", "4242_2"]
    for i, label in enumerate(LABELS):
        with open(logs / f"4242_{i}" / f"4242_{i}_submitted.pkl", "rb") as fh:
            delayed = pickle.load(fh)  # written by this test's own submission
        task = delayed.args[0]
        assert task.label() == label and task.threads == 6 and task.grid.results_dir == res
    # run again while cells 1 and 2 are pending (squeue): only cell 0 is submitted again
    (bindir / "squeue").write_text(_SQUEUE, encoding="utf-8")
    assert main(["grid", str(cfg), "--executor", "slurm"]) == 0
    err = capsys.readouterr().err
    assert "submitted 1 cell(s) to Slurm as job 4243" in err, err
    assert "2 cell(s) still queued or running in job array(s) 4242: not submitted again" in err
    assert [e["cell"] for e in _read_json(logs / "4243_cells.json")] == [LABELS[0]]
    assert "--array" not in (tmp_path / "sbatch-4243.sh").read_text(encoding="utf-8")


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"name": "slrm"}, r"'name' parameter of \[executor\] in g.toml must be one of local, "
                           r"slurm, ray. Got 'slrm'"),
        ({"name": "local", "max_parallel": 4}, r"'max_parallel' .* must be 1 with the local"),
        ({"max_parallel": 0}, r"'max_parallel' .* must be a positive integer. Got 0"),
        ({"colour": 1}, r"\[executor\] in g.toml: unknown key\(s\) \['colour'\]. Valid keys: "
                        r"max_parallel, name, ray, slurm, threads"),
        ({"slurm": {"time": "2h"}}, r"'time' parameter of \[executor.slurm\] .* "
                                    r"'\[D-\]HH:MM:SS'. Got '2h'"),
        ({"slurm": {"gpus": 1}}, r"unknown key\(s\) \['gpus'\]. Valid keys: .*gpus_per_node"),
        ({"slurm": {"mem_gb": -1}}, r"'mem_gb' .* a positive number of GB"),
        ({"ray": {"num_gpus": "all"}}, r"'num_gpus' parameter of \[executor.ray\] .* 'auto' or"),
    ],
)
def test_bad_executor_table(table, message):
    with pytest.raises(ValueError, match=message):
        parse_executor_config(table, "g.toml")


def test_executor_defaults_and_cli_override(tmp_path):
    cfg = parse_executor_config({"name": "slurm", "slurm": {"time": "1-00:00:30"}}, "g.toml")
    assert cfg.cell_threads() == 8 and cfg.slurm.gpus_per_node == 1
    from adue.executors._config import slurm_minutes

    assert slurm_minutes(cfg.slurm.time) == 1441 and slurm_minutes(90) == 90
    ray_cfg = cfg.replace(name="ray", max_parallel=3, ray_address="10.0.0.1:6379")
    assert (ray_cfg.name, ray_cfg.max_parallel, ray_cfg.ray.address) == ("ray", 3, "10.0.0.1:6379")
    assert ray_cfg.cell_threads() == 1 and cfg.name == "slurm"
    with pytest.raises(ValueError, match="'max_parallel' .* must be a positive integer. Got -1"):
        cfg.replace(max_parallel=-1)


def test_ray_request_larger_than_the_cluster(caplog):
    from adue.executors._ray import _check_fits

    class Cluster:  # what ray.cluster_resources() says of a 2-CPU machine without a GPU
        @staticmethod
        def cluster_resources():
            return {"CPU": 2.0, "memory": 1e9}

    cfg = parse_executor_config({"name": "ray", "ray": {"num_cpus": 2}}, "g.toml")
    _check_fits(Cluster, cfg, 0.0, local=True)  # fits
    with pytest.raises(ValueError, match=r"'num_gpus' parameter of \[executor.ray\] must be at "
                                         r"most 0 on this machine's Ray cluster. Got 1 instead"):
        _check_fits(Cluster, cfg, 1.0, local=True)
    big = parse_executor_config({"name": "ray", "ray": {"num_cpus": 4}}, "g.toml")
    with pytest.raises(ValueError, match=r"'num_cpus' .* must be at most 2 .* Got 4 instead"):
        _check_fits(Cluster, big, 0.0, local=True)
    _check_fits(Cluster, big, 1.0, local=False)  # a cluster of its own may grow: a warning
    assert "num_cpus=4 but the Ray cluster has 2" in caplog.text
    assert "num_gpus=1 but the Ray cluster has 0" in caplog.text


def test_missing_extra_names_the_install_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    monkeypatch.setitem(sys.modules, "submitit", None)
    grid = _grid(tmp_path, "missing", {"name": "ray"})
    with pytest.raises(MissingExtraError, match=r"pip install 'adue\[ray\]'"):
        execute_grid(grid)
    assert not Path(grid.results_dir).exists()  # checked before any work
    cfg = tmp_path / "g.toml"
    cfg.write_text(f'profile = "quick"\nbackbones = ["minilm"]\ndatasets = ["sst2"]\nseeds = [1]\n'
                   f'results_dir = "{tmp_path / "r"}"\n', encoding="utf-8")
    assert main(["grid", str(cfg), "--executor", "slurm"]) == 2
    assert "needs submitit, which is not installed. Install it with: pip install 'adue[slurm]'" in (
        capsys.readouterr().err)
