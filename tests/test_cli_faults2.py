"""CLI faults of the second adversarial pass: torchrun's environment, --smoke's flags and
errors, Ctrl-C in --refind, SIGTERM, empty folders, user strings shown as rich markup, and
terminals that cannot encode every character."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lrtool import cli, distributed
from lrtool.cli import app, interrupt_on_sigterm
from lrtool.errors import ConfigError

runner = CliRunner()

LAUNCH_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def lines_of(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


@pytest.fixture
def clean_env(monkeypatch):
    """No torchrun variables from the machine running the tests; the test sets its own."""
    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def run_lrtool(*args: object, cwd: Path, env: dict[str, str] | None = None):
    """`python -m lrtool ARGS` in a child process: the entry point with its signal handler
    and stream settings, which CliRunner bypasses."""
    return subprocess.run(
        [sys.executable, "-m", "lrtool", *map(str, args)],
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- 1. torchrun's environment is checked before any folder --------------------------------


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"RANK": "x"}, "RANK is 'x'"),
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE is 'two'"),
        ({"LOCAL_RANK": "-1"}, "LOCAL_RANK is '-1'"),
        ({"WORLD_SIZE": "2"}, "RANK, MASTER_ADDR, MASTER_PORT are not set"),
        ({"RANK": "1"}, "WORLD_SIZE is unset"),
    ],
)
@pytest.mark.parametrize("out", [True, False], ids=["out", "no-out"])
def test_a_broken_launch_environment_exits_2_before_any_folder(
    tiny_yaml, tmp_path, clean_env, env, said, out
):
    for name, value in env.items():
        clean_env.setenv(name, value)
    clean_env.chdir(tmp_path)
    where = ["--out", tmp_path / "o"] if out else []
    result = invoke("find", tiny_yaml, "--no-plot", *where)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert text.startswith("error: ") and said in text
    assert "Launch with torchrun, or unset WORLD_SIZE, RANK and LOCAL_RANK." in text
    assert not (tmp_path / "o").exists() and not (tmp_path / "runs").exists()


def test_torchruns_own_environment_is_accepted_and_checked(clean_env):
    assert distributed.launch_settings() == (1, 0)
    clean_env.setenv("WORLD_SIZE", "1")
    clean_env.setenv("RANK", "0")
    assert distributed.launch_settings() == (1, 0)
    for name, value in [("WORLD_SIZE", "4"), ("RANK", "3"), ("LOCAL_RANK", "1")]:
        clean_env.setenv(name, value)
    clean_env.setenv("MASTER_ADDR", "127.0.0.1")
    clean_env.setenv("MASTER_PORT", "29500")
    assert distributed.launch_settings() == (4, 3)
    assert distributed.launched() and distributed.launched_rank() == 3
    # A rank outside the world is refused here, not left to a rendezvous that never completes.
    clean_env.setenv("RANK", "4")
    with pytest.raises(ConfigError, match="RANK is 4, but WORLD_SIZE is 4: ranks run from 0 to 3"):
        distributed.launch_settings()


# --- 2. a failed smoke run: the error paragraph, then the FAILED line ---------------------


def test_a_failed_smoke_check_prints_the_error_then_ends_with_the_failed_line(tiny_yaml):
    result = invoke("train", tiny_yaml, "--lr-max", "1e30", "--smoke")
    assert result.exit_code == 1
    lines = lines_of(result.output)
    assert lines[-1].startswith("lrtool smoke: FAILED (train: the loss is not finite")
    assert any(line.startswith("error: the loss is not finite") for line in lines)


@pytest.mark.parametrize("where", ["flag", "file"])
def test_smoke_train_accepts_a_per_group_list_of_rates(write_yaml, tmp_path, where):
    from conftest import TINY

    lr_max = "\n  lr_max: [0.01, 0.1]" if where == "file" else ""
    path = write_yaml(TINY.replace("  epochs: 2", "  epochs: 2" + lr_max))  # mlp: 2 groups
    flag = ["--lr-max", "0.01,0.1"] if where == "flag" else []
    result = invoke("train", path, *flag, "--smoke", "--out", tmp_path / "s")
    assert result.exit_code == 0, result.output
    assert "lrtool smoke: ok (train, " in result.output


# --- 3. Ctrl-C in the sweep after training ------------------------------------------------


def test_ctrl_c_in_the_refind_exits_130_and_keeps_the_files(tiny_yaml, tmp_path, monkeypatch):
    @contextmanager
    def sweep(console, total, label="find"):
        def on_step(step, *args):
            if label == "refind" and step == 5:
                raise KeyboardInterrupt

        yield on_step

    monkeypatch.setattr("lrtool.report.sweep_progress", sweep)
    out = tmp_path / "rf"
    result = invoke("train", tiny_yaml, "--lr-max", "0.1", "--refind", "--out", out, "--no-plot")
    assert result.exit_code == 130, result.output
    text = " ".join(result.output.split())
    assert "refind: interrupted after 5 steps, so no rate is advised" in text
    assert "use about" not in text  # no advice from a partial sweep
    assert json.loads((out / "refind.json").read_text())["stop_reason"] == "interrupted"
    assert json.loads((out / "train.json").read_text())["stop_reason"] == "completed"


# --- 4. SIGTERM stops a run as Ctrl-C does ------------------------------------------------

# A model that sends its own process SIGTERM on its 50th forward pass: with 30 steps a sweep,
# in the second seed's sweep.
SIGTERM_MODEL = """\
import os
import signal

from torch import nn

calls = 0


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        global calls
        calls += 1
        if calls == 50:
            os.kill(os.getpid(), signal.SIGTERM)
        return self.fc(x)
"""


@pytest.fixture
def sigterm_as_ctrl_c():
    """The handler `lrtool` installs at its entry point, in this process for one test."""
    previous = signal.getsignal(signal.SIGTERM)
    interrupt_on_sigterm()
    yield
    signal.signal(signal.SIGTERM, previous)


def test_sigterm_keeps_the_finished_seeds_and_exits_130(write_yaml, tmp_path, sigterm_as_ctrl_c):
    from conftest import TINY

    (tmp_path / "term_models.py").write_text(SIGTERM_MODEL)
    path = write_yaml(
        TINY.replace(
            "  name: mlp\n  args: {in_features: 4, hidden: [8], num_classes: 3}\n", ""
        ).replace("model:\n", 'model: {name: "term_models:Net"}\n')
    )
    out = tmp_path / "f"
    result = invoke("find", path, "--seeds", "3", "--no-plot", "--out", out)
    assert result.exit_code == 130, result.output
    assert "interrupted" in result.output
    data = json.loads((out / "find.json").read_text())
    assert data["stop_reason"] == "interrupted"
    assert data["seeds_finished"] == 1 and data["seeds_requested"] == 3


def test_the_entry_point_installs_the_sigterm_handler(monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "app", lambda: seen.append(signal.getsignal(signal.SIGTERM)))
    previous = signal.getsignal(signal.SIGTERM)
    try:
        cli.main()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert seen and seen[0] not in (signal.SIG_DFL, signal.SIG_IGN, previous)


# --- 5. a command that fails before writing leaves no folder it made ----------------------


@pytest.mark.parametrize("out", [None, "new"], ids=["no-out", "out"])
def test_a_failed_verify_leaves_no_empty_folder(tiny_yaml, tmp_path, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    where = ["--out", tmp_path / "new" / "v"] if out else []
    result = invoke("verify", tiny_yaml, "--from", tmp_path / "missing.json", *where)
    assert result.exit_code == 2, result.output
    assert not list(tmp_path.glob("runs/tiny/*"))
    assert not (tmp_path / "new").exists()  # --out's new parent goes too


def test_a_failed_run_keeps_an_out_folder_that_was_there(tiny_yaml, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    result = invoke("verify", tiny_yaml, "--from", tmp_path / "missing.json", "--out", mine)
    assert result.exit_code == 2
    assert mine.is_dir()


def test_a_failed_plot_save_leaves_no_folder(tmp_path):
    chart = tmp_path / "new" / "charts" / "c.png"
    result = invoke("plot", tmp_path / "missing.json", "--save", chart)
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "new").exists()


def test_a_failed_smoke_run_leaves_no_out_folder(tiny_yaml, tmp_path):
    out = tmp_path / "s"
    result = invoke("train", tiny_yaml, "--lr-max", "1e30", "--smoke", "--out", out)
    assert result.exit_code == 1
    assert not out.exists()


# --- 6. user strings are printed as they are, never as markup or emoji --------------------


@pytest.mark.parametrize("name", ["o[/]x", "[bold]o2"])
def test_out_paths_are_printed_literally(tiny_yaml, tmp_path, name):
    out = tmp_path / name
    found = invoke("find", tiny_yaml, "--no-plot", "--out", out)
    assert found.exit_code == 0, found.output
    assert f"files: {out}" in " ".join(found.output.split())
    trained = invoke(
        "train", tiny_yaml, "--lr-max", "0.1", "--epochs", "1", "--no-plot", "--out", out / "t"
    )
    assert trained.exit_code == 0, trained.output
    assert f"files: {out / 't'}" in " ".join(trained.output.split())


def test_error_text_keeps_emoji_codes_and_brackets(tiny_yaml):
    result = invoke("check", tiny_yaml, "--set", "model.name=comps:three:x")
    assert result.exit_code == 2
    assert "comps:three:x" in result.output


def test_check_prints_the_name_in_its_title_literally(tiny_yaml):
    result = invoke("check", tiny_yaml, "--set", "name='[red]nm:three:x'")
    assert result.exit_code == 0, result.output
    assert "experiment [red]nm:three:x" in result.output


def test_compare_labels_are_printed_literally(tiny_yaml, tmp_path):
    assert invoke("find", tiny_yaml, "--no-plot", "--out", tmp_path / "a").exit_code == 0
    found = tmp_path / "a" / "find.json"
    result = invoke("compare", found, found, "--labels", "[bold]one,two:three:", "--no-plot")
    assert result.exit_code == 0, result.output
    assert "[bold]one" in result.output and "two:three:" in result.output


# --- 7. a terminal that cannot show every character ---------------------------------------


def test_output_degrades_on_an_ascii_terminal(tiny_yaml, tmp_path):
    """No UnicodeEncodeError, and no chart of '?' rows: the chart is left out with a note,
    the table stays (plot imports no torch: a quick child process; every command shares the
    entry point)."""
    assert invoke("find", tiny_yaml, "--no-plot", "--out", tmp_path / "f").exit_code == 0
    found = tmp_path / "f" / "find.json"
    result = run_lrtool("plot", found, cwd=tmp_path, env={"PYTHONIOENCODING": "ascii"})
    assert result.returncode == 0, result.stderr
    assert "chart left out" in result.stdout and "??????" not in result.stdout


def test_charts_fit_a_narrow_terminal(tiny_yaml, tmp_path):
    assert invoke("find", tiny_yaml, "--no-plot", "--out", tmp_path / "f").exit_code == 0
    found = tmp_path / "f" / "find.json"
    result = run_lrtool("plot", found, cwd=tmp_path, env={"COLUMNS": "50"})
    assert result.returncode == 0, result.stderr
    assert "robust_minimum" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 50


def test_the_default_suggestion_line_is_drawn_over_a_rule_at_the_same_rate():
    from lrtool.plot import find_chart

    lr = np.logspace(-4, 0, 50)
    loss = 2 - np.tanh(np.linspace(-2, 2, 50)) + np.linspace(0, 3, 50) ** 4 / 20
    same = {"robust_minimum": 1e-2, "minimum": 1e-2}
    chart = find_chart(lr, loss, loss, same, "robust_minimum", color=False)
    assert chart.count("┃") >= 10  # the heavy line, not minimum's dots over it


# --- 8. --smoke refuses the options it would ignore ---------------------------------------


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        (["find", "--seeds", "3"], "--seeds"),
        (["find", "--strict"], "--strict"),
        (["train", "--lr-max", "0.1", "--resume", "somewhere"], "--resume"),
        (["train", "--lr-max", "0.1", "--refind"], "--refind"),
        (["verify", "--from", "find.json"], "--from"),
    ],
)
def test_smoke_refuses_options_it_would_ignore(tiny_yaml, tmp_path, command, flag):
    name, *options = command
    result = invoke(name, tiny_yaml, *options, "--smoke", "--out", tmp_path / "s")
    assert result.exit_code == 2, result.output
    lines = lines_of(result.output)
    assert lines[0].startswith(f"error: --smoke cannot be combined with {flag}")
    assert lines[-1].startswith(f"lrtool smoke: FAILED ({name}: --smoke cannot be combined")
    assert not (tmp_path / "s").exists()


def test_a_smoke_failure_keeps_its_note_on_stand_ins(write_yaml, tmp_path):
    """The FAILED line still says what stood in for absent data (smoke_note)."""
    path = write_yaml(
        textwrap.dedent(
            f"""
            device: cpu
            model: {{name: cnn, args: {{in_channels: 1, num_classes: 10, width: 4}}}}
            data: {{name: torchvision.MNIST, args: {{root: "{tmp_path}/nothing"}}, batch_size: 8}}
            """
        )
    )
    result = invoke("train", path, "--lr-max", "1e30", "--smoke", "--smoke-batches", "1")
    assert result.exit_code == 1, result.output
    last = lines_of(result.output)[-1]
    assert last.startswith("lrtool smoke: FAILED (train: ")
    assert last.endswith("; MNIST absent: FakeData (1, 28, 28) x 10 classes stood in)")


# --- Ctrl-C while the CLI's modules load --------------------------------------------------


def test_ctrl_c_while_the_cli_loads_exits_130_without_a_traceback(monkeypatch, capsys):
    import lrtool.entry as entry

    class Interrupting:  # Ctrl-C arriving as the module is looked up
        def find_spec(self, name, path=None, target=None):
            if name == "lrtool.cli":
                raise KeyboardInterrupt

    monkeypatch.delitem(sys.modules, "lrtool.cli")
    monkeypatch.setattr(sys, "meta_path", [Interrupting(), *sys.meta_path])
    with pytest.raises(SystemExit) as info:
        entry.main()
    assert info.value.code == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_the_console_script_is_the_guarded_entry_point():
    import tomllib

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["lrtool"] == "lrtool.entry:main"


# --- paths as a shell user means them (sixth adversarial pass) ------------------------------


def test_a_home_folder_in_out_or_output_dir_is_the_home_folder(tiny_yaml, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    # `--out=~/x`: no shell expands `~` after `=`.
    result = invoke("find", tiny_yaml, "--no-plot", "--out=~/found")
    assert result.exit_code == 0, result.output
    assert (home / "found" / "find.json").is_file() and not (tmp_path / "~").exists()
    result = invoke("find", tiny_yaml, "--no-plot", "--set", "output_dir=~/runs")
    assert result.exit_code == 0, result.output
    assert list((home / "runs" / "tiny").glob("*-find/find.json"))
    assert not (tmp_path / "~").exists()


def test_an_empty_out_is_refused_not_read_as_the_current_folder(tiny_yaml, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = runner.invoke(app, ["find", str(tiny_yaml), "--no-plot", "--out", ""])
    assert result.exit_code == 2, result.output
    assert "empty value" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_plot_save_draws_dollar_signs_as_written(tiny_yaml, tmp_path):
    pytest.importorskip("matplotlib")
    assert invoke("find", tiny_yaml, "--no-plot", "--out", tmp_path / "f").exit_code == 0
    named = tmp_path / "budget_$5_vs_$10.json"
    named.write_bytes((tmp_path / "f" / "find.json").read_bytes())
    result = invoke("plot", named, "--save", tmp_path / "curve.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_reader_that_leaves_does_not_stop_the_run(tiny_yaml, tmp_path):
    """`lrtool verify ... | head -n 2`: the rest of the output goes nowhere, the run goes on
    and writes its files, exit 0 (rich's default exits 1 and the run was lost)."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone
    command = [sys.executable, "-m", "lrtool", "find", str(tiny_yaml), "--out", str(tmp_path / "f")]
    proc = subprocess.run(command, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=180)
    os.close(write_end)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == [
        "config.yaml", "find.csv", "find.json"
    ]  # fmt: skip


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
@pytest.mark.parametrize("args", [["schema"], ["--version"], ["find", "--help"], ["find", "TINY"]])
def test_output_to_a_full_disk_is_said_in_one_paragraph(args, tiny_yaml, tmp_path):
    """`lrtool schema > /dev/full` printed a traceback; a run blamed "rich raised OSError"."""
    args = [str(tiny_yaml) if a == "TINY" else a for a in args]
    extra = ["--out", str(tmp_path / "o"), "--no-plot"] if args[-1] == str(tiny_yaml) else []
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "lrtool", *args, *extra],
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=120,
        )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "no space left on the device" in proc.stderr
    if extra:
        assert (tmp_path / "o" / "find.json").is_file()  # written before the output failed


@pytest.mark.parametrize("value, ok", [("1e2", True), ("100", True), ("2.5", False),
                                       ("inf", False), ("nan", False), ("abc", False)])  # fmt: skip
def test_eval_every_flag_reads_numbers_as_the_key_does(tiny_yaml, tmp_path, value, ok):
    """`--set train.eval_every=1e2` was taken and `--eval-every 1e2` refused; inf and nan
    crashed the flag's own conversion."""
    out = tmp_path / "o"
    result = invoke("train", tiny_yaml, "--lr-max", "0.1", "--eval-every", value, "--epochs",
                    "1", "--out", out, "--no-plot")  # fmt: skip
    if ok:
        assert result.exit_code == 0, result.output
        assert json.loads((out / "train.json").read_text())["config"]["train"]["eval_every"] == 100
    else:
        assert result.exit_code == 2, result.output
        said = " ".join(result.output.split())
        assert "--eval-every expects 'epoch' or a number of steps" in said


@pytest.mark.parametrize("command", ["check", "find", "train", "verify"])
def test_an_empty_experiment_path_is_called_empty_not_a_folder(command):
    """`lrtool check "$EXP"` with EXP unset said "Experiment file . is a folder"."""
    result = invoke(command, "")
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.replace("│", " ").split())
    assert "got an empty value (an unset shell variable?)" in said and "is a folder" not in said
