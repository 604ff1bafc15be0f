"""`.ci/run` must fail when any step fails: run it with stand-ins for pip, python, ruff and
lrtool on PATH, one of which fails, and check the exit code and which steps ran."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "run"
STEPS = ("pip", "python", "ruff", "lrtool")

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def run_ci(tmp_path: Path, failing: str | None) -> tuple[int, list[str]]:
    """Run .ci/run with every tool replaced by a script that logs its call (and fails when it
    is `failing`); return the exit code and the logged calls."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for name in STEPS:
        status = 1 if name == failing else 0
        tool = bin_dir / name
        tool.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\nexit {status}\n')
        tool.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin"}
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)
    calls = log.read_text().splitlines() if log.exists() else []
    return done.returncode, calls


def test_all_steps_pass(tmp_path):
    code, calls = run_ci(tmp_path, failing=None)
    assert code == 0
    assert [c.split()[0] for c in calls[:3]] == ["pip", "python", "ruff"]
    assert calls[1] == "python -m pytest"
    assert sum(c.startswith("lrtool find") for c in calls) == len(
        list((ROOT / "experiments").glob("*.yaml"))
    )


@pytest.mark.parametrize("failing", ["pip", "python", "ruff"])
def test_a_failing_step_fails_the_script_and_stops_it(tmp_path, failing):
    code, calls = run_ci(tmp_path, failing=failing)
    assert code != 0
    assert calls[-1].split()[0] == failing  # nothing ran after the failing step
    assert not any(c.startswith("lrtool") for c in calls)


def test_a_failing_smoke_run_fails_the_script(tmp_path):
    code, calls = run_ci(tmp_path, failing="lrtool")
    assert code != 0
    assert sum(c.startswith("lrtool") for c in calls) == 1
