"""Data-parallel runs: two CPU processes (gloo) must agree on everything."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from conftest import TINY

from lrtool.config import load_experiment
from lrtool.run import find_built, train_built


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, yaml_path: str, out: str) -> None:
    """One torchrun-like rank: the library, as `lrtool find` and `lrtool train` call it."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(world),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    from lrtool import distributed
    from lrtool.build import build

    exp = load_experiment(yaml_path)
    distributed.init(exp.device)
    try:
        found = find_built(build(exp))
        built = build(exp)
        trained = train_built(built, 0.05)
        state = distributed.unwrap(built.model).state_dict()
        torch.save(
            {"find": found.to_dict(), "train": trained.to_dict(), "state": state},
            Path(out) / f"rank{rank}.pt",
        )
    finally:
        distributed.shutdown()


def test_two_ranks_agree_on_the_find_and_the_trained_weights(tiny_yaml, tmp_path):
    mp.spawn(_rank_main, args=(2, _free_port(), str(tiny_yaml), str(tmp_path)), nprocs=2)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    for key in ("suggested_lr", "suggestions", "history", "stop_reason", "steps"):
        assert r0["find"][key] == r1["find"][key], key
    assert r0["find"]["world_size"] == 2
    assert r0["find"]["effective_batch_size"] == 32  # 16 per rank x 2 ranks
    assert r0["train"]["history"] == r1["train"]["history"]
    assert r0["train"]["final"] == r1["train"]["final"]
    for name, value in r0["state"].items():
        assert torch.equal(value, r1["state"][name]), name
    # Each rank sees half the data: 60 of the 120 training samples, 3 full batches of 16
    # (the ragged fourth is dropped), so two epochs are 6 steps, not the 14 of one process.
    assert len(r0["train"]["history"]["step"]) == 2 * 3


def test_single_process_is_unchanged(tiny_yaml):
    """Without torchrun: no process group, the whole data set, world size 1."""
    from lrtool import distributed
    from lrtool.build import build

    exp = load_experiment(tiny_yaml)
    built = build(exp)
    assert not distributed.active()
    assert built.world_size == 1 and built.reduce is None
    assert isinstance(built.model, torch.nn.Sequential)  # not wrapped in DDP
    assert len(built.train_data) == 7  # 120 samples, batches of 16, ragged one dropped
    found = find_built(built)
    assert found.world_size == 1 and found.effective_batch_size == 16


@pytest.mark.skipif(sys.platform == "win32", reason="torchrun's rendezvous needs a POSIX host")
def test_torchrun_cli_writes_one_set_of_files(write_yaml, tmp_path):
    path = write_yaml(TINY)
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-port",
            str(_free_port()),
            "-m",
            "lrtool",
            "find",
            str(path),
            "--out",
            str(out),
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)  # rank 0 alone printed, so stdout is one JSON document
    assert data["world_size"] == 2 and data["effective_batch_size"] == 32
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "find.csv", "find.json"]
    assert data.pop("folder") == str(out)
    assert json.loads((out / "find.json").read_text()) == data


@pytest.mark.skipif(sys.platform == "win32", reason="torchrun's rendezvous needs a POSIX host")
def test_torchrun_train_prints_its_report_once(write_yaml, tmp_path):
    """The console is built before the process group exists: rank 1 must still stay quiet."""
    path = write_yaml(TINY)
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-port", str(_free_port()), "-m", "lrtool", "train", str(path),
         "--lr-max", "0.05", "--out", str(out), "--no-plot"],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("files:") == 1, proc.stdout
    assert proc.stdout.count("final:") == 1, proc.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="torchrun's rendezvous needs a POSIX host")
def test_torchrun_refuses_a_used_out_on_every_rank_at_once_and_says_so_once(write_yaml, tmp_path):
    """Rank 0 alone holds the folder; rank 1 must not carry on into the first collective and
    wait there for a rank 0 that has left (torchrun killed it 30 s later)."""
    path = write_yaml(TINY)
    out = tmp_path / "run"
    out.mkdir()
    (out / "find.json").write_text("{}")  # another run's file
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
            "--master-port", str(_free_port()), "-m", "lrtool", "find", str(path),
            "--out", str(out), "--no-plot",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=180,
    )  # fmt: skip
    assert proc.returncode != 0
    assert time.monotonic() - started < 25, proc.stderr[-2000:]
    said = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(said) == 1 and "already holds another run's files" in said[0]
    assert (out / "find.json").read_text() == "{}"


def _rank1_env() -> dict[str, str]:
    return {
        **os.environ,
        "RANK": "1",
        "LOCAL_RANK": "1",
        "WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
        "OMP_NUM_THREADS": "1",
    }


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX")
def test_another_rank_with_bad_input_waits_for_torchrun_to_stop_it_and_stays_quiet(tmp_path):
    """Leaving first would let torchrun stop rank 0 before it said what was wrong: rank 1 waits,
    and the SIGTERM that ends it prints nothing (no second message, no traceback)."""
    import signal

    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: mlp}\nmodle: 3\n")  # refused before the ranks join
    proc = subprocess.Popen(
        [sys.executable, "-m", "lrtool", "find", str(bad), "--no-plot"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_rank1_env(),
    )
    time.sleep(4)  # imports done, the error found, waiting
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert "error" not in err.lower() and "Traceback" not in err, err


def test_another_rank_says_the_error_itself_when_nothing_stops_it(tmp_path, monkeypatch):
    """Rank 0 found no such fault (it would have been stopped otherwise): rank 1 speaks."""
    from typer.testing import CliRunner

    from lrtool import cli

    monkeypatch.setattr(cli, "RANK0_GRACE_S", 0.05)
    for key, value in _rank1_env().items():
        monkeypatch.setenv(key, value)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: mlp}\nmodle: 3\n")
    result = CliRunner().invoke(cli.app, ["find", str(bad), "--no-plot"])
    assert result.exit_code == 2
    assert "modle (line 2): unknown key" in result.output


@pytest.mark.skipif(sys.platform == "win32", reason="torchrun's rendezvous needs a POSIX host")
def test_smoke_under_torchrun_is_refused_once(write_yaml, tmp_path):
    """Every process ran its own smoke run: two summary lines, two JSON documents, and the
    processes fighting over --out."""
    path = write_yaml(TINY)
    proc = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
            "--master-port", str(_free_port()), "-m", "lrtool", "find", str(path), "--smoke",
            "--out", str(tmp_path / "s"),
        ],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=180,
    )  # fmt: skip
    assert proc.returncode != 0
    said = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(said) == 1 and "--smoke runs on one CPU process" in said[0], proc.stderr[-2000:]
    assert "lrtool smoke: ok" not in proc.stdout + proc.stderr
    assert not (tmp_path / "s").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="torchrun's rendezvous needs a POSIX host")
def test_an_error_in_one_ranks_data_is_said_by_that_rank(tmp_path):
    """Only rank 0 printed (a gloo "connection reset" after rank 1 left); rank 1's own error,
    the real one, was never shown."""
    (tmp_path / "ranked.py").write_text(
        "import os\n"
        "import torch\n"
        "from torch.utils.data import TensorDataset\n"
        "def data():\n"
        "    if os.environ.get('RANK') == '1':\n"
        "        raise ValueError('cannot read the shard on rank 1')\n"
        "    return TensorDataset(torch.randn(64, 4), torch.randint(0, 3, (64,)))\n"
    )
    exp = tmp_path / "exp.yaml"
    exp.write_text(TINY.replace("name: sklearn.iris", "name: 'ranked:data'"))
    proc = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
            "--master-port", str(_free_port()), "-m", "lrtool", "find", str(exp),
            "--out", str(tmp_path / "o"), "--no-plot",
        ],
        capture_output=True, text=True, timeout=180,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode != 0
    said = " ".join(proc.stderr.split())
    assert "rank 1: the data (data.name) could not be built" in said, proc.stderr[-3000:]
    assert "cannot read the shard on rank 1" in said
