"""The command line: parse options, load the experiment, call one workflow, render.

Each command parses its options, loads the experiment, calls one function of
`lrtool.workflows` (which does the work and saves the files), draws its result and picks the
exit code. Errors are turned into a red paragraph and an exit code here and nowhere else
(`handled`). Modules that import torch (workflows, distributed, smoke, run, verify) are
imported inside the functions that need them, so `lrtool --help` and `lrtool schema` start
without torch; every other import is at the top.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from . import __version__, report
from .config import json_schema, load_experiment
from .errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    ConfigError,
    LrtoolError,
    NoSuggestion,
    RunFailed,
    UserCodeError,
)
from .history import (
    claimed,
    fresh_folder,
    history_kind,
    new_run_folder,
    png_file,
    to_json,
)
from .plot import (
    compare_chart,
    find_chart,
    metric_vs_lr_chart,
    multi_find_chart,
    round_one,
    save_png,
    train_charts,
    verify_chart,
)
from .report import (
    check_report,
    compare_table,
    find_summary,
    fmt_lr,
    train_summary,
    verify_round_table,
)
from .results import read_json
from .saved import redraw_settings, resuggested

EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 the run failed (NaN loss, every full-length verify run diverged, "
    "failed smoke check, your model/data/loss code raised while running); 2 bad input "
    "(config, flags, files, a model that does not fit its data, a component that fails to "
    "build); 3 no rate could be suggested where one is needed (--strict, --lr-max auto, "
    "verify); 130 interrupted (Ctrl-C or SIGTERM; what finished is written first)."
)

app = typer.Typer(
    name="lrtool",
    help="Learning-rate range tests and one-cycle training for YAML-defined experiments.\n\n"
    + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


# Every console prints user strings (paths, names, YAML values) as they are: emoji codes such
# as ':three:' in 'comps:three:x' stay text. Markup stays on for lrtool's own colours, so a
# user string that goes into markup is escaped (rich.markup.escape) or printed markup=False.
class _Console(Console):
    """A reader that stops reading (`| head`) must not stop the run: rich would exit with 1
    and the run's results would be lost; the rest of the output goes nowhere instead."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        _to_devnull(self.file)


def _to_devnull(stream: Any) -> None:
    """Point `stream`'s file descriptor at /dev/null (the reader at its other end is gone)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # not a real file (a test's buffer): nothing was broken there


err_console = _Console(stderr=True, emoji=False)


def new_console(**settings: Any) -> Console:
    """A console on stdout that prints emoji codes as text (see err_console)."""
    return _Console(emoji=False, **settings)


# --- shared options -----------------------------------------------------------------------


def _read_path(value: str) -> Path:
    """A file lrtool reads: an empty value (an unset "$EXP") is refused, not read as "."."""
    return _shell_path(value, "a file", "")


ExpArg = Annotated[
    str, typer.Argument(help="Experiment YAML file.", callback=_read_path, show_default=False)
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override a key: --set train.epochs=3 (dotted key, YAML value; repeatable).",
        show_default=False,
    ),
]
# plot and compare redraw a saved result: only the reading of its curve can change.
RereadOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Read the saved curve again with another rule or smoothing: --set "
        "find.suggest=valley, --set find.smoothing=0.9 (repeatable).",
        show_default=False,
    ),
]
DeviceOpt = Annotated[
    str | None, typer.Option(help="Device: auto, cpu, cuda, cuda:N or mps.", show_default=False)
]


def _written_path(value: str | None) -> Path | None:
    """A path lrtool writes to, as a shell would have meant it: `--out=~/runs` (no shell
    expands `~` after `=`) is the home folder's, not a folder named `~`; an empty value (an
    unset "$OUT") is refused rather than read as the current folder."""
    if value is None:
        return None
    return _shell_path(value, "a path", "; write . for the current folder")


def _shell_path(value: str, what: str, hint: str) -> Path:
    """`value` as a shell would have meant it: `~` expanded (also after `=`, where no shell
    does; an unknown ~user stays as written); an empty value refused, not read as "."."""
    if not value.strip():
        raise typer.BadParameter(
            f"expected {what}, got an empty value (an unset shell variable?){hint}."
        )
    return Path(os.path.expanduser(value))


OutOpt = Annotated[
    str | None,
    typer.Option(
        "--out",
        callback=_written_path,
        help="Output folder, new or holding no other run's files (default: a new "
        "runs/<name>/<timestamp>-<command>/).",
        show_default=False,
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print the result JSON to stdout and nothing else there.")
]
DebugOpt = Annotated[
    bool, typer.Option("--debug", help="Show the full traceback of any failure (for bug reports).")
]
SeedOpt = Annotated[
    int | None,
    typer.Option(
        help="Seed of the weights, the split and the data order (the top-level `seed` key).",
        show_default=False,
    ),
]
# plot and compare exist to draw: they draw unless told not to, terminal or not.
DrawOpt = Annotated[
    bool,
    typer.Option("--plot/--no-plot", help="Draw the chart; --no-plot prints only the table."),
]
PlotOpt = Annotated[
    bool | None,
    typer.Option(
        "--plot/--no-plot",
        help="Draw charts (default: when stdout is a terminal).",
        show_default=False,
    ),
]
SmokeOpt = Annotated[
    bool,
    typer.Option(
        "--smoke",
        help="CI smoke run: CPU, fp32, a few batches, a handful of steps, no plot; fails with "
        "one line when the experiment is broken. Ends with a 'lrtool smoke: ...' line.",
    ),
]
SmokeBatchesOpt = Annotated[
    int, typer.Option("--smoke-batches", min=1, help="Batches kept by --smoke.")
]
SmokeTimeoutOpt = Annotated[
    float,
    typer.Option("--smoke-timeout", min=0, help="Seconds a --smoke run may take (0: no limit)."),
]

# Keys both the finder and the trainer have (find.grad_accum, train.grad_accum, ...).
GradAccumOpt = Annotated[
    int | None, typer.Option(help="Mini-batches per step (default 1).", show_default=False)
]
PrecisionOpt = Annotated[
    str | None, typer.Option(help="fp32, bf16 or fp16 (default fp32).", show_default=False)
]
ClipOpt = Annotated[float | None, typer.Option(help="Clip the gradient norm.", show_default=False)]


# Exceptions that are how typer and click end a command on purpose, not failures. Older
# typer raises click's own; newer typer vendors click and installs without it.
_WAYS_OUT: tuple[type[BaseException], ...] = (typer.Exit, typer.Abort)
if hasattr(typer, "TyperException"):
    _WAYS_OUT += (typer.TyperException,)
try:
    import click
except ImportError:  # typer >= 0.29 needs no click
    pass
else:
    _WAYS_OUT += (click.exceptions.Exit, click.exceptions.Abort, click.ClickException)


@contextmanager
def handled(debug: bool, *, smoke: str | None = None, as_json: bool = False) -> Iterator[None]:
    """The one error boundary: a red paragraph and an exit code, never a traceback.

    lrtool errors exit with their own code; Ctrl-C with 130; an exception from code lrtool
    calls (the user's model, data or loss, a library) names the component and shows the
    frames from the user's files: exit 2 if it failed to build, 1 if it failed while running.
    `--debug` lets everything through with its full traceback. `smoke` is the command of a
    --smoke run: then every failure also ends with the greppable 'lrtool smoke:' line.
    """
    try:
        yield
    except LrtoolError as err:
        if debug:
            raise
        fail(err, smoke, as_json)
    except KeyboardInterrupt:
        if debug:
            raise
        err_console.print("[yellow]interrupted[/]")
        if smoke is not None:
            from .smoke import summary

            smoke_line(summary(False, smoke, "interrupted", 0, None), as_json)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except _WAYS_OUT:
        raise  # typer's and click's own way out, with its own exit code
    except Exception as err:
        if debug:
            raise
        full = no_space(err)
        own = not full and bool(_joined_rank)  # another rank's own fault: it must speak
        fail(
            RunFailed(full) if full else UserCodeError.from_exception(err),
            smoke,
            as_json,
            own=own,
        )


def fail(err: LrtoolError, smoke: str | None, as_json: bool, *, own: bool = False) -> NoReturn:
    """Print the error paragraph (and the user's frames), the smoke line if any; exit.

    Under torchrun, bad input (exit 2) is the same on every process: rank 0 alone says so.
    `own`: the user's code failed on a rank other than 0 after the ranks joined (its shard
    of the data): that rank says so, named, though its console is otherwise quiet.
    """
    text = str(err)
    if own:
        err_console.quiet = False
        text = f"rank {_joined_rank}: {text}"
    elif err.exit_code == EXIT_BAD_INPUT and _quiet_rank() and _stopped_while_rank0_speaks():
        raise typer.Exit(err.exit_code) from None
    report.error(err_console, text)
    if err.details:
        err_console.print(err.details, markup=False, highlight=False, soft_wrap=True)
    if smoke is not None:
        from .smoke import summary

        note = getattr(err, "smoke_note", None)  # stand-ins the smoke run used (smoke.py)
        smoke_line(summary(False, smoke, one_line(err), 0, note), as_json)
    raise typer.Exit(err.exit_code) from None


def out_dir(out: Path | None, output_dir: str, name: str, command: str) -> Path:
    """The run's folder, created and proved writable before any work (ConfigError if not).

    `--out DIR` must not hold another run's files. Without it each run gets a folder of its
    own, `output_dir/name/<timestamp>-<command>`, with `-2`, `-3`, ... when a run started in
    the same second took the name. Under torchrun only rank 0 creates it: it alone writes.
    """

    rank = _launched_rank()  # a broken torchrun environment is refused before any folder
    if out is not None:
        # Only rank 0 holds the folder (the lock); every rank checks it holds no other run's
        # files, so a refused --out stops them all at once instead of leaving the others to
        # wait for rank 0 in the first collective. Nothing is written before that collective:
        # the others cannot see rank 0's files, only its lock, which they ignore.
        return fresh_folder(out) if rank == 0 else fresh_folder(out, ignore_lock=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if rank != 0:
        return Path(output_dir) / name / f"{stamp}-{command}"
    return new_run_folder(Path(output_dir) / name, f"{stamp}-{command}")


def _quiet_rank() -> bool:
    """A torchrun process other than rank 0, before the processes joined up: then bad input
    (the file, a flag, --out) is the same on every process and rank 0 says it. After that an
    error may be this rank's own (its shard of the data): it speaks. A broken launch
    environment: not quiet."""
    try:
        if _launched_rank() == 0:
            return False
    except LrtoolError:
        return False
    dist = sys.modules.get("torch.distributed")  # never imported: no group was joined
    joined = dist is not None and dist.is_available() and dist.is_initialized()
    return not joined


# How long another rank waits, after bad input, for torchrun to stop it. Had it left first,
# torchrun would stop rank 0 at once, often before rank 0 had printed the error (CI saw no
# message at all); waiting lets rank 0 leave first, and torchrun then stops this one.
RANK0_GRACE_S = 10.0


def _stopped_while_rank0_speaks() -> bool:
    """Wait for rank 0 to report the error and torchrun to stop this process (True). False if
    nothing stopped it: rank 0 found no such fault, so this rank says it itself."""
    try:
        time.sleep(RANK0_GRACE_S)
    except KeyboardInterrupt:  # torchrun's SIGTERM (interrupt_on_sigterm), or Ctrl-C
        return True
    return False


def _launched_rank() -> int:
    """torchrun's RANK, read (and checked) before the process group exists (0 without)."""
    from . import distributed

    return distributed.launched_rank()


@contextmanager
def run_folder(out: Path | None, exp: Any, command: str) -> Iterator[Path]:
    """The run's folder (`out_dir`), removed again if the run ends before writing into it.

    Only folders this run created go (--out a/b/c: c, and b and a if they were new); an
    existing --out folder stays, and under torchrun only rank 0, which creates the folder and
    writes in it, may remove it.
    """
    made = missing_folders(out) if out is not None else []
    folder = out_dir(out, exp.output_dir, exp.name, command)
    if out is None:
        made = [folder]  # a new runs/<name>/<timestamp>-<command>; runs/<name> is shared
    main = _launched_rank() == 0
    with discarded_if_empty(made if main else []), claimed(folder if main else None):
        yield folder


def missing_folders(path: Path) -> list[Path]:
    """`path` and those of its parents that do not exist yet, deepest first."""
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    return missing


@contextmanager
def discarded_if_empty(made: list[Path]) -> Iterator[None]:
    """Remove the folders this run made (deepest first) if it ends with nothing in them."""
    try:
        yield
    finally:
        for folder in made:
            try:
                folder.rmdir()
            except OSError:  # not empty, or already gone: keep it and those above it
                break


def stdout_console(as_json: bool) -> Console:
    """Human output goes to stdout, except with --json, where stdout is kept for the JSON.

    Under torchrun only rank 0 prints. The rank is torchrun's RANK: this console is built
    before the process group exists, when every process still counts as the main one.
    """
    return err_console if as_json else new_console(quiet=_launched_rank() != 0)


def emit_json(data: dict[str, Any], folder: Path | None = None) -> None:
    """Print the result JSON; with `folder`, also where its files went (`"folder"`)."""
    from . import distributed

    if folder is not None:
        data = {**data, "folder": str(folder)}
    if distributed.is_main():
        try:
            typer.echo(to_json(data), nl=False)
        except BrokenPipeError:
            _to_devnull(sys.stdout)  # the reader left; the files are written all the same


@contextmanager
def data_parallel(device_spec: str) -> Iterator[bool]:
    """Under torchrun: join the process group; only rank 0 prints and writes. Yields is-main."""
    from . import distributed

    global _joined_rank
    distributed.init(device_spec)
    main = distributed.is_main()
    _joined_rank = distributed.rank()
    err_console.quiet = not main
    try:
        yield main
    finally:
        distributed.shutdown()


# This process's rank once it joined a torchrun group (None before, or without torchrun): an
# error in the user's code after that may be this rank's alone (its shard of the data), and
# only it can say so.
_joined_rank: int | None = None


def workflows() -> ModuleType:
    """The workflows, imported on first use: `lrtool --help` must not pay for importing torch."""
    from . import workflows as module

    return module


def sweep_bars() -> Callable[[int, str], Any]:
    """A rich progress bar per finder sweep, on stderr (looked up when called)."""
    return lambda steps, label: report.sweep_progress(err_console, steps, label)


def train_bars() -> Callable[[int, int], Any]:
    """The rich training progress (steps, epoch lines), on stderr."""
    return lambda steps, epochs: report.train_progress(err_console, steps, epochs)


def show_chart(console: Console, chart: str) -> None:
    report.show_chart(console, chart)


def chart_width(console: Console) -> int:
    """80 columns, or the terminal's width when it is narrower (a chart wider than the
    terminal wraps every line)."""
    return min(80, console.width)


def want_plot(plot: bool | None, as_json: bool) -> bool:
    if plot is not None:
        return plot
    return not as_json and sys.stdout.isatty()


def one_line(err: LrtoolError) -> str:
    """An error for the one smoke line: its headline, or its paragraph's lines joined."""
    headline = getattr(err, "headline", None)
    if headline:
        return headline
    first, *rest = [line.strip().removeprefix("• ") for line in str(err).splitlines()]
    return " ".join([first, "; ".join(line for line in rest if line)]).strip()


# --- commands -----------------------------------------------------------------------------
# find, train and verify run past 80 lines only by their option declarations (Typer reads the
# options from the signature); each body parses, loads, calls one workflow and renders.


@app.command()
def check(
    experiment: ExpArg,
    set_: SetOpt = None,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Validate the experiment, build everything and run one forward/backward pass."""
    with handled(debug):
        exp = load_experiment(experiment, set_, {"device": device, "seed": seed})
        built, loss = workflows().run_check(exp)
        check_report(new_console(markup=False), built, loss)  # YAML values, printed as they are


@app.command()
def schema() -> None:
    """Print the JSON Schema of the experiment file (for editor autocompletion)."""

    typer.echo(json.dumps(json_schema(), indent=2))


@app.command()
def find(
    experiment: ExpArg,
    start_lr: Annotated[
        float | None, typer.Option(help="First rate (default 1e-7).", show_default=False)
    ] = None,
    end_lr: Annotated[
        float | None, typer.Option(help="Last rate (default 10).", show_default=False)
    ] = None,
    num_steps: Annotated[
        int | None, typer.Option(help="Steps (mini-batches) (default 100).", show_default=False)
    ] = None,
    mode: Annotated[
        str | None, typer.Option(help="exp or linear (default exp).", show_default=False)
    ] = None,
    extend_decades: Annotated[
        float | None,
        typer.Option(
            help="A flat sweep goes on past end_lr for up to this many decades, until the loss "
            "blows up; 0: stop at end_lr (default 3).",
            show_default=False,
        ),
    ] = None,
    smoothing: Annotated[
        float | None, typer.Option(help="EMA beta (default 0.98).", show_default=False)
    ] = None,
    diverge_factor: Annotated[
        float | None,
        typer.Option(
            help="Stop when smoothed loss > factor x best (default 4).", show_default=False
        ),
    ] = None,
    suggest: Annotated[
        str | None, typer.Option(help="Default suggestion method.", show_default=False)
    ] = None,
    val_loss: Annotated[
        bool | None,
        typer.Option(
            "--val-loss/--train-loss",
            help="Record validation loss at each step (Smith's variant).",
            show_default=False,
        ),
    ] = None,
    val_batches: Annotated[
        int | None,
        typer.Option(
            help="Validation batches --val-loss evaluates at each step (default 4).",
            show_default=False,
        ),
    ] = None,
    grad_accum: GradAccumOpt = None,
    precision: PrecisionOpt = None,
    clip_grad_norm: ClipOpt = None,
    seeds: Annotated[
        str | None,
        typer.Option(
            help="Run once per seed: a count (3) or a list (0,3,7); the suggestion is "
            "their consensus.",
            show_default=False,
        ),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 3 when no suggestion can be made.")
    ] = False,
    plot: PlotOpt = None,
    out: OutOpt = None,
    as_json: JsonOpt = False,
    set_: SetOpt = None,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    smoke: SmokeOpt = False,
    smoke_batches: SmokeBatchesOpt = 4,
    smoke_timeout: SmokeTimeoutOpt = 120.0,
    debug: DebugOpt = False,
) -> None:
    """Run the LR range test and suggest a learning rate."""
    with handled(debug, smoke="find" if smoke else None, as_json=as_json):
        if smoke:
            refuse_with_smoke({"--seeds": seeds is not None, "--strict": strict})
        values = {
            "find.start_lr": start_lr,
            "find.end_lr": end_lr,
            "find.num_steps": num_steps,
            "find.mode": mode,
            "find.extend_decades": extend_decades,
            "find.smoothing": smoothing,
            "find.diverge_factor": diverge_factor,
            "find.suggest": suggest,
            "find.val_loss": val_loss,
            "find.val_batches": val_batches,
            "find.grad_accum": grad_accum,
            "find.precision": precision,
            "find.clip_grad_norm": clip_grad_norm,
            "device": device,
            "seed": seed,
        }
        exp = load_experiment(experiment, set_, values)
        seed_list = workflows().parse_seeds(seeds, exp.seed)  # bad --seeds: refused before any work
        if smoke:
            smoke_run("find", exp, out, smoke_batches, smoke_timeout, as_json)
            return
        with run_folder(out, exp, "find") as folder, data_parallel(exp.device):
            result = workflows().run_find(exp, seed_list, folder=folder, progress=sweep_bars())
            render_find(stdout_console(as_json), result, folder, plot=want_plot(plot, as_json))
            if as_json:
                emit_json(result.to_dict(), folder)
        if result.stop_reason == "interrupted":
            raise KeyboardInterrupt
        if strict and result.suggested_lr is None:
            raise NoSuggestion(
                f"--strict: no learning rate could be suggested. {result.warning or ''}"
            )


def smoke_line(line: str, as_json: bool) -> None:
    """The greppable summary: stdout, unless stdout is reserved for --json."""
    (err_console if as_json else new_console()).print(
        line, markup=False, highlight=False, soft_wrap=True
    )


def refuse_with_smoke(given: dict[str, bool]) -> None:
    """A smoke run is one short CPU check: options it would not honour are refused, not dropped."""
    flags = [flag for flag, present in given.items() if present]
    if flags:
        listed = " and ".join(flags)
        raise ConfigError(
            f"--smoke cannot be combined with {listed}: a smoke run is one short CPU run that "
            f"checks the experiment builds and learns, and would ignore {listed}. Leave out "
            f"{listed}, or --smoke."
        )


def smoke_run(
    command: str,
    exp: Any,
    out: Path | None,
    batches: int,
    timeout: float,
    as_json: bool,
    lrs: str | None = None,
) -> None:
    """`COMMAND --smoke`: run the workflow, save its files, print the one summary line.

    A failure is raised to `handled`, which prints the error and the FAILED line.
    """
    from . import distributed

    if distributed.launch_settings()[0] > 1:
        # Each process would run its own smoke run: two summary lines, two JSON documents,
        # and the processes fighting over --out.
        raise ConfigError(
            "--smoke runs on one CPU process and checks the experiment, not the launch: run "
            "it without torchrun (`lrtool COMMAND EXP --smoke`)."
        )
    made = missing_folders(out) if out is not None else []
    target = fresh_folder(out) if out is not None else None  # checked before the run
    with discarded_if_empty(made), claimed(target):
        outcome = workflows().run_smoke(command, exp, lrs=lrs, batches=batches, timeout=timeout)
        # Without --out the files go to a temporary folder only for --json, which names it;
        # else none is made (a CI job runs this for every experiment, every time).
        keep = target is not None or as_json
        folder = outcome.save(target) if keep else None
    if as_json:
        emit_json(outcome.result.to_dict(), folder)
    smoke_line(outcome.line, as_json)


def render_find(console: Console, result: Any, folder: Path, *, plot: bool) -> None:

    if plot:
        title = f"LR range test: {result.config['name']}" if result.config else None
        if result.seeds:
            curves = [
                {
                    "label": f"seed {s['seed']}",
                    "lr": s["history"]["lr"],
                    "smoothed_loss": s["history"]["smoothed_loss"],
                }
                for s in result.seeds
            ]
            chart = multi_find_chart(
                curves,
                suggestions=[s["suggested_lr"] for s in result.seeds],
                consensus=result.consensus_lr,
                title=title,
                color=console.is_terminal,
                width=chart_width(console),
            )
        else:
            chart = find_chart(
                result.lr,
                result.loss,
                result.smoothed_loss,
                result.suggestions,
                result.suggestion_method,
                title=title,
                color=console.is_terminal,
                width=chart_width(console),
            )
        show_chart(console, chart)
    find_summary(console, result, escape(str(folder)))  # the summary's text is markup


def _moms(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(f"--moms expects three comma-separated numbers, got {text!r}.") from None
    return values


def _eval_every(text: str | None) -> str | int | None:
    if text is None or text == "epoch":
        return text
    from .registry import number_from_text

    number = number_from_text(text)  # "1e2" is 100, as in the file and in --set
    if number is None or not math.isfinite(number) or number != int(number):
        raise ConfigError(f"--eval-every expects 'epoch' or a number of steps, got {text!r}.")
    return int(number)


@app.command()
def train(
    ctx: typer.Context,
    experiment: ExpArg,
    lr_max: Annotated[
        str | None,
        typer.Option(
            help="Peak rate: a number (3e-3); LOW:HIGH (1e-5:1e-3, spread over the groups); "
            ":HIGH (HIGH for the head, HIGH/10 for the rest); auto (run the finder first).",
            show_default=False,
        ),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Epochs (default 5).", show_default=False)
    ] = None,
    pct_start: Annotated[
        float | None,
        typer.Option(help="Share of steps warming up (default 0.25).", show_default=False),
    ] = None,
    div_factor: Annotated[
        float | None,
        typer.Option(help="Start rate = lr_max / this (default 25).", show_default=False),
    ] = None,
    final_div_factor: Annotated[
        float | None,
        typer.Option(help="Final rate = start rate / this (default 1e5).", show_default=False),
    ] = None,
    moms: Annotated[
        str | None,
        typer.Option(help="Momentum start,peak,end (default 0.95,0.85,0.95).", show_default=False),
    ] = None,
    anneal: Annotated[str | None, typer.Option(help="cos or linear.", show_default=False)] = None,
    freeze_epochs: Annotated[
        int | None,
        typer.Option(help="Epochs training only the head first (default 0).", show_default=False),
    ] = None,
    train_bn: Annotated[
        bool | None,
        typer.Option(
            "--train-bn/--no-train-bn",
            help="During --freeze-epochs, keep training the frozen groups' normalisation "
            "layers, as fastai does (default: train them).",
            show_default=False,
        ),
    ] = None,
    grad_accum: GradAccumOpt = None,
    precision: PrecisionOpt = None,
    clip_grad_norm: ClipOpt = None,
    eval_every: Annotated[
        str | None,
        typer.Option(help="'epoch' or a number of steps (default epoch).", show_default=False),
    ] = None,
    cycles: Annotated[
        int | None,
        typer.Option(
            help="One-cycle runs sharing the epochs, a re-find before each after the first "
            "setting its peak; with --freeze-epochs the frozen phase is cycle 1 (default 1).",
            show_default=False,
        ),
    ] = None,
    group_ratio: Annotated[
        float | None,
        typer.Option(
            help="After unfreezing between cycles, head rate / first group's rate (default 100).",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue the interrupted run in this folder (or its checkpoint.pt), at the "
            "checkpoint's rate; refused if a setting that changes the run differs.",
            show_default=False,
        ),
    ] = None,
    refind: Annotated[
        bool, typer.Option("--refind", help="Run the finder again on the trained model.")
    ] = False,
    plot: PlotOpt = None,
    out: OutOpt = None,
    as_json: JsonOpt = False,
    set_: SetOpt = None,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    smoke: SmokeOpt = False,
    smoke_batches: SmokeBatchesOpt = 4,
    smoke_timeout: SmokeTimeoutOpt = 120.0,
    debug: DebugOpt = False,
) -> None:
    """Train with the one-cycle policy at a peak rate (or per-group rates)."""
    with handled(debug, smoke="train" if smoke else None, as_json=as_json):
        if smoke:
            refuse_with_smoke({"--resume": resume is not None, "--refind": refind})
        values = {
            "train.lr_max": lr_max,
            "train.epochs": epochs,
            "train.pct_start": pct_start,
            "train.div_factor": div_factor,
            "train.final_div_factor": final_div_factor,
            "train.moms": _moms(moms),
            "train.anneal": anneal,
            "train.freeze_epochs": freeze_epochs,
            "train.train_bn": train_bn,
            "train.grad_accum": grad_accum,
            "train.precision": precision,
            "train.clip_grad_norm": clip_grad_norm,
            "train.eval_every": _eval_every(eval_every),
            "train.cycles": cycles,
            "train.group_ratio": group_ratio,
            "device": device,
            "seed": seed,
        }
        exp = load_experiment(experiment, set_, values)
        if resume is None:
            workflows().check_lr_max(exp)  # before a smoke run too
        if smoke:
            smoke_run("train", exp, out, smoke_batches, smoke_timeout, as_json)
            return
        if resume is not None:
            resumed = workflows().resume_folder(resume)
            if out is not None and out.resolve() != resumed.resolve():
                raise ConfigError("--resume continues in its own folder: leave out --out.")
            where: AbstractContextManager[Any] = claimed(
                resumed if _launched_rank() == 0 else None, "--resume"
            )
        else:
            where = run_folder(out, exp, "train")
        console = stdout_console(as_json)
        with where as claimed_folder, data_parallel(exp.device):
            folder = resumed if resume is not None else claimed_folder
            outcome = workflows().run_train(
                exp,
                lr_max,
                folder=folder,
                refind=refind,
                resume=resume,
                sweep_progress=sweep_bars(),
                train_progress=train_bars(),
                say=lambda text: console.print(text, markup=False, highlight=False),
            )
            render_train(console, outcome, plot=want_plot(plot, as_json))
            if outcome.stop_reason == "interrupted":
                print_resume_hint(
                    console, outcome.resumable, resume_command(ctx, folder), exp.train.cycles
                )
            if as_json:
                emit_json(outcome.train.to_dict(), folder)
            outcome.raise_for_stop()
            if outcome.refind is not None and outcome.refind.stop_reason == "interrupted":
                # The training finished and is saved; only the sweep after it was cut short.
                raise KeyboardInterrupt


def resume_command(ctx: typer.Context, folder: Path) -> str:
    """The command that continues this train run: what was typed, with --resume FOLDER.

    Rebuilt from every option given on the command line (so each setting the run started
    with comes back and the resume is not refused); the rate comes from the checkpoint, and
    options that only choose the output or the display are left out.
    """
    skip = {"lr_max", "resume", "out", "plot", "as_json", "debug"}
    words = ["lrtool", "train"]
    for param in ctx.command.params:
        name = param.name or ""
        source = ctx.get_parameter_source(name)
        if name in skip or name.startswith("smoke") or getattr(source, "name", "") != "COMMANDLINE":
            continue
        value = ctx.params[name]
        if param.param_type_name == "argument":
            words.append(str(value))
        elif getattr(param, "is_flag", False):
            words.append(param.opts[0] if value else param.secondary_opts[0])
        elif getattr(param, "multiple", False):
            for item in value:
                words += [param.opts[0], str(item)]
        else:
            words += [param.opts[0], str(value)]
    words += ["--resume", str(folder)]
    return shlex.join(words)


def render_train(console: Console, outcome: Any, *, plot: bool) -> None:
    """The training charts (and the before/after sweeps with --refind), then the summary."""

    result, refound, first_find = outcome.train, outcome.refind, outcome.find
    if plot:
        h = result.history
        color = console.is_terminal  # without colour, curves differ by glyph
        starts = [c["first_step"] for c in result.cycles]
        chart = train_charts(
            h["step"],
            h["loss"],
            h["lr"],
            h["momentum"],
            color=color,
            cycle_starts=starts,
            width=chart_width(console),
        )
        show_chart(console, chart)
        if refound is not None:
            curves = [{"label": "after training", "lr": refound.lr, "y": refound.smoothed_loss}]
            if first_find is not None:
                curves.insert(
                    0,
                    {
                        "label": "before training",
                        "lr": first_find.lr,
                        "y": first_find.smoothed_loss,
                    },
                )
            title = "LR range test before/after training"
            show_chart(
                console, compare_chart(curves, title=title, color=color, width=chart_width(console))
            )
    train_summary(console, result, escape(str(outcome.folder)))  # the summary's text is markup
    if refound is not None:
        console.print(refind_advice(refound), markup=False)


def print_resume_hint(console: Console, resumable: bool, command: str, cycles: int = 1) -> None:
    """What to do after Ctrl-C: the command that resumes, or why there is none."""
    if resumable:
        console.print(f"to resume: {command}", markup=False, highlight=False, soft_wrap=True)
    elif cycles > 1:
        console.print(
            f"a run of {cycles} cycles keeps no checkpoint (each cycle's rate comes from a "
            "re-find on the model so far), so it cannot be resumed and its weights were not "
            "kept: no model.pt. train.json records the epochs it trained."
        )
    else:
        console.print("stopped before the first epoch ended: no checkpoint to resume from.")


def refind_advice(refound: Any) -> str:
    """After training the curve is flat, then rises: use a tenth of the start of the rise."""
    from .run import refind_rise

    if getattr(refound, "stop_reason", None) == "interrupted":  # a partial sweep: no rise
        return (
            f"refind: interrupted after {refound.steps} steps, so no rate is advised. The "
            "training's files are kept; refind.json holds the partial sweep."
        )
    start = refind_rise(refound.lr, refound.loss)
    if start is None:
        return "refind: the loss does not rise within the sweep; no rate to advise."
    return (
        f"refind: the loss starts to rise near {start:.2e}; to keep training this model, "
        f"use about {start / 10:.2e} (the rise / 10). Saved as refind.json."
    )


@app.command("plot")
def plot_cmd(
    file: Annotated[
        Path,
        typer.Argument(help="A saved find.json, refind.json, train.json or verify.json."),
    ],
    save: Annotated[
        str | None,
        typer.Option(
            help="Write a PNG (needs the 'plot' extra).",
            callback=_written_path,
            show_default=False,
        ),
    ] = None,
    plot: DrawOpt = True,
    set_: RereadOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Redraw a saved result in the terminal (or as a PNG); --no-plot prints its table.

    --set find.suggest=METHOD or find.smoothing=BETA redraws a find/refind curve with another
    suggestion method or smoothing, from the saved raw loss.
    """
    made = missing_folders(save.parent) if save is not None else []
    with handled(debug), discarded_if_empty(made):
        if save is not None:
            png_file(save)  # before reading and drawing: a .png, never over the user's files
        data = resuggested(read_json(file), redraw_settings(set_), str(file))
        kind = history_kind(data)
        if save is not None:
            try:
                save_png(
                    save,
                    [_curve_of(kind, file.name, data)],
                    suggestions=_marks_of(kind, data),
                    x="step" if kind == "train" else "lr",
                    title=file.name,
                )
            except ImportError as err:
                raise LrtoolError(str(err)) from None  # the missing extra: bad input, exit 2
            err_console.print(f"saved {save}", markup=False, highlight=False)
            return
        console = new_console()
        if not plot:
            console.print(compare_table(kind, [escape(file.name)], [data]))  # cells are markup
            return
        color = console.is_terminal
        if kind == "verify":
            chart = verify_chart(
                data.get("candidates") or [],
                metric=data.get("metric", "val_loss"),
                best=data.get("best_lr"),
                color=color,
                width=chart_width(console),
            )
        elif kind == "find":
            h = data["history"]
            chart = find_chart(
                h["lr"],
                h["loss"],
                h["smoothed_loss"],
                data.get("suggestions") or {},
                data.get("suggestion_method"),
                title=str(file),
                color=color,
                width=chart_width(console),
            )
        else:
            h = data["history"]
            starts = [c.get("first_step") for c in data.get("cycles") or []]
            chart = train_charts(
                h["step"],
                h["loss"],
                h["lr"],
                h.get("momentum"),
                color=color,
                width=chart_width(console),
                cycle_starts=[s for s in starts if s is not None],
            )
        show_chart(console, chart)


def _curve_of(kind: str, label: str, data: dict[str, Any]) -> dict[str, Any]:
    """The curve a saved result contributes to compare (and to a PNG)."""
    if kind == "verify":
        first = round_one(data.get("candidates") or [], data.get("metric", "val_loss"))
        return {"label": label, "lr": [lr for lr, _ in first], "y": [y for _, y in first]}
    h = data["history"]
    if kind == "find":
        return {"label": label, "lr": h["lr"], "y": h["smoothed_loss"]}
    return {"label": label, "step": h["step"], "y": h["loss"]}


def _marks_of(kind: str, data: dict[str, Any]) -> dict[str, Any] | None:
    if kind == "verify":
        return {"best": data.get("best_lr")}
    return data.get("suggestions") if kind == "find" else None


@app.command()
def verify(
    experiment: ExpArg,
    lrs: Annotated[
        str | None,
        typer.Option(
            help="Candidate peak rates, e.g. 1e-3,3e-3,1e-2 (default: the suggestion x 1/3, 1, 3).",
            show_default=False,
        ),
    ] = None,
    from_: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="Take the suggestion from a saved find.json instead of running the finder.",
            show_default=False,
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            "--epochs",
            help="Epochs of the real training, which the final round trains (train.epochs; "
            "default 5).",
            show_default=False,
        ),
    ] = None,
    max_epochs: Annotated[
        int | None,
        typer.Option(
            "--max-epochs",
            hidden=True,
            help="Deprecated (0.1's longest round, now the real run): the same as --epochs.",
        ),
    ] = None,
    plot: PlotOpt = None,
    out: OutOpt = None,
    as_json: JsonOpt = False,
    set_: SetOpt = None,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    smoke: SmokeOpt = False,
    smoke_batches: SmokeBatchesOpt = 4,
    smoke_timeout: SmokeTimeoutOpt = 120.0,
    debug: DebugOpt = False,
) -> None:
    """Screen candidate rates on short runs, then judge the best two at the real length."""
    with handled(debug, smoke="verify" if smoke else None, as_json=as_json):
        if smoke:
            refuse_with_smoke({"--from": from_ is not None})
        if lrs is not None and from_ is not None:
            raise ConfigError("--lrs and --from both choose the candidates: give one.")
        if epochs is not None and max_epochs is not None:
            raise ConfigError("--max-epochs is the old name of --epochs: give one.")
        exp = load_experiment(
            experiment,
            set_,
            {
                "device": device,
                "seed": seed,
                "train.epochs": max_epochs if epochs is None else epochs,
            },
        )
        if lrs is not None:
            from .verify import parse_lrs

            parse_lrs(lrs)  # bad rates are refused before --out is created
        if smoke:
            smoke_run("verify", exp, out, smoke_batches, smoke_timeout, as_json, lrs=lrs)
            return
        console = stdout_console(as_json)
        with run_folder(out, exp, "verify") as folder, data_parallel(exp.device):
            result = workflows().run_verify(
                exp,
                lrs=lrs,
                from_find=from_,
                folder=folder,
                sweep_progress=sweep_bars(),
                on_candidates=lambda *told: print_candidates(console, exp, *told),
                on_run=print_run,
                on_round=lambda number, rows, metric: console.print(
                    verify_round_table(number, rows, metric)
                ),
            )
            render_verify(console, result, folder, plot=want_plot(plot, as_json))
            if as_json:
                emit_json(result.to_dict(), folder)
        if result.stop_reason == "interrupted":
            raise KeyboardInterrupt
        if result.best_lr is None:
            raise RunFailed(
                "verify: every full-length run diverged (a NaN or infinite loss), so no rate "
                "won; the candidates are all too high for this run. Try lower rates with "
                "--lrs, or find again with a lower find.end_lr. verify.json records each run."
            )


def print_candidates(
    console: Console, exp: Any, rates: list[float], metric: str, centre: str, centre_lr: Any
) -> None:
    from .suggest import CLIFF_DIVISOR
    from .verify import BRACKET_DIVISOR  # torch: imported when needed

    if centre == "loss_minimum":
        console.print(
            f"verify: no suggested rate; the candidates surround the lowest point of the loss "
            f"curve / {BRACKET_DIVISOR:g} = {fmt_lr(centre_lr)}"
        )
    elif centre == "sweep_end":
        console.print(
            "verify: no suggested rate, and the loss neither fell nor blew up over the sweep: "
            f"the candidates surround its last rate / {CLIFF_DIVISOR:g} = {fmt_lr(centre_lr)} "
            "(the cliff lies beyond the sweep; widening climbs if higher rates win)"
        )
    console.print(
        f"verify: {len(rates)} candidates ({', '.join(fmt_lr(r) for r in rates)}), "
        f"ranked by {metric}; the final round trains the real {exp.train.epochs} epochs",
        markup=False,  # the metric is a name from the experiment file
    )


def print_run(round_number: int, lr: float, epochs: float) -> None:

    err_console.print(
        f"  round {round_number}: training lr {fmt_lr(lr)} for {epochs:g} "
        f"epoch{'' if epochs == 1 else 's'}",
        highlight=False,
    )


def render_verify(console: Console, result: Any, folder: Path, *, plot: bool) -> None:
    """The metric-vs-rate chart of round 1, the widening, the winner, the cost."""

    metric = result.metric
    if plot and result.candidates:
        first = [
            (c["lr"], r.get(metric))
            for c in result.candidates
            for r in c["rounds"][:1]
            if r["round"] == 1
        ]
        show_chart(
            console,
            metric_vs_lr_chart(
                [lr for lr, _ in first],
                [v for _, v in first],
                metric=f"{metric} after round 1",
                best=result.best_lr,
                color=console.is_terminal,
                width=chart_width(console),
            ),
        )
    if result.widened:
        console.print(
            "the winner was at the edge of the rates tried: widened with "
            + ", ".join(fmt_lr(r) for r in result.widened)
        )
    if result.best_lr is not None and result.stop_reason == "interrupted":
        # The last completed round's winner: a screen's, when the real-length round was cut.
        unjudged = (
            ": the short screen's winner, not judged at the real length"
            if result.model_lr is None
            else ""
        )
        console.print(f"[yellow]interrupted; best so far = {fmt_lr(result.best_lr)}{unjudged}[/]")
    elif result.best_lr is not None:
        suggested = result.suggested_lr
        note = f" (the suggestion was {fmt_lr(suggested)})" if suggested else ""
        console.print(f"[bold green]best_lr = {fmt_lr(result.best_lr)}[/]{note}")
    else:
        console.print(
            "[yellow]interrupted before the first round completed: no winner[/]"
            if result.stop_reason == "interrupted"
            else "[yellow]no candidate finished without diverging[/]"
        )
    console.print(
        f"cost: {result.budget_epochs_total:.4g} epochs in all, "
        f"{result.cost_vs_one_training:.3g} x one training of {result.full_epochs} epochs"
    )
    if result.model_lr is not None and folder is not None:
        console.print(_verify_model_line(result, folder))
    console.print(f"files: {folder}", markup=False, highlight=False)


def _verify_model_line(result: Any, folder: Path) -> str:
    """What model.pt is: the winner's full-length run, which is a training at best_lr of the
    experiment that ran (config.yaml beside it: --epochs and --set included)."""
    train = (result.config or {}).get("train") or {}
    line = f"model.pt: the final round's run at best_lr, {result.full_epochs} epochs"
    if train.get("freeze_epochs") or (train.get("cycles") or 1) > 1:
        return line + " (one cycle over every layer: without the file's freeze_epochs/cycles)"
    # The exact rate (repr): a rounded one would train a slightly different model.
    command = (
        f"lrtool train {shlex.quote(str(folder / 'config.yaml'))} --lr-max {result.model_lr!r}"
    )
    return line + f", is the model `{command}` trains"


@app.command()
def compare(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="Saved results of one kind: find.json / refind.json, train.json or verify.json."
        ),
    ],
    labels: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated labels, one per file (default: the file paths).",
            show_default=False,
        ),
    ] = None,
    plot: DrawOpt = True,
    set_: RereadOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Overlay several saved curves in one chart and tabulate their suggestions."""
    with handled(debug):
        settings = redraw_settings(set_)
        datas = [resuggested(read_json(f), settings, str(f)) for f in files]
        names = _labels(labels, files)
        kinds = {history_kind(d) for d in datas}
        if len(kinds) > 1:
            listed = ", ".join(
                f"{f} ({history_kind(d)})" for f, d in zip(files, datas, strict=True)
            )
            raise ConfigError(
                "compare overlays results of one kind: LR range tests (find.json, refind.json), "
                f"training histories (train.json) or verify runs (verify.json). Got {listed}."
            )
        kind = kinds.pop()
        metrics = {d.get("metric") for d in datas}
        if kind == "verify" and len(metrics) > 1:
            ranked = ", ".join(sorted(map(str, metrics)))
            raise ConfigError(
                f"compare: these verify runs were ranked by different metrics ({ranked}); "
                "compare runs ranked by the same one."
            )
        console = new_console()
        if plot:
            curves = [_curve_of(kind, n, d) for n, d in zip(names, datas, strict=True)]
            title = {
                "find": "LR range tests",
                "train": "Training loss",
                "verify": f"{metrics.pop()} after round 1",
            }[kind]
            chart = compare_chart(
                curves,
                x="step" if kind == "train" else "lr",
                title=title,
                color=console.is_terminal,
                width=chart_width(console),
            )
            show_chart(console, chart)
        console.print(compare_table(kind, [escape(n) for n in names], datas))  # cells are markup


def _labels(text: str | None, files: list[Path]) -> list[str]:
    if text is None:
        return [str(f) for f in files]
    names = [n.strip() for n in text.split(",")]
    if len(names) != len(files):
        raise ConfigError(f"--labels gave {len(names)} labels for {len(files)} files.")
    return names


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"lrtool {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=version_callback, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    pass


def main() -> None:
    """The `lrtool` entry point (and `python -m lrtool`)."""
    replace_unencodable_output()
    interrupt_on_sigterm()
    try:
        app()
    except OSError as err:  # outside any command's boundary: `schema`, `--help`, `--version`
        full = no_space(err)
        if full is None:
            raise
        report.error(err_console, full)
        raise SystemExit(EXIT_FAILED) from None


def no_space(err: BaseException) -> str | None:
    """The message for a full disk (a file lrtool writes, or stdout sent to one), else None:
    it is neither the user's code nor a library's fault."""
    if not isinstance(err, OSError) or err.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    where = f"writing {err.filename}" if err.filename else "writing the output"
    return (
        f"no space left on the device ({where}). Free some space, or send the output or the "
        "run's folder (--out) elsewhere; files a run finished before this were written whole."
    )


def replace_unencodable_output() -> None:
    """Print what the terminal's encoding cannot show as '?' instead of failing on it.

    Under PYTHONIOENCODING=ascii or a latin-1 locale, rich would raise UnicodeEncodeError on
    the first '·' or box line, after the run had done its work.
    """
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with suppress(ValueError, OSError):  # closed, or not a text stream we may change
                reconfigure(errors="replace")


def interrupt_on_sigterm() -> None:
    """SIGTERM (`kill`, `timeout`, a job scheduler) stops a run as Ctrl-C does.

    The handler raises KeyboardInterrupt in the main thread, so the same paths save what
    finished (find.json with the finished seeds, train.json, the checkpoint) and the command
    exits 130.
    """

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    with suppress(ValueError):  # not the main thread (lrtool embedded in another program)
        signal.signal(signal.SIGTERM, interrupt)
