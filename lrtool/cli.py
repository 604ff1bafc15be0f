"""The command line: parse options, load the experiment, call the library, render.

Errors are turned into a red paragraph and an exit code here and nowhere else.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from . import __version__
from .errors import EXIT_INTERRUPTED, LrtoolError, NoSuggestion, UserCodeError

EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 the run failed (NaN loss, failed smoke check, your model/data/loss "
    "code raised while running); 2 bad input (config, flags, files, a model that does not fit "
    "its data, a component that fails to build); 3 --strict and no suggestion could be made; "
    "130 interrupted."
)

app = typer.Typer(
    name="lrtool",
    help="Learning-rate range tests and one-cycle training for YAML-defined experiments.\n\n"
    + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

err_console = Console(stderr=True)


# --- shared options -----------------------------------------------------------------------

ExpArg = Annotated[Path, typer.Argument(help="Experiment YAML file.", show_default=False)]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override a key: --set train.epochs=3 (dotted key, YAML value; repeatable).",
        show_default=False,
    ),
]
DeviceOpt = Annotated[
    str | None, typer.Option(help="Device: auto, cpu, cuda, cuda:N or mps.", show_default=False)
]
OutOpt = Annotated[
    Path | None,
    typer.Option(
        "--out",
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
    float, typer.Option("--smoke-timeout", min=0, help="Seconds a --smoke run may take.")
]


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
        fail(UserCodeError.from_exception(err), smoke, as_json)


def fail(err: LrtoolError, smoke: str | None, as_json: bool) -> NoReturn:
    """Print the error paragraph (and the user's frames), the smoke line if any; exit."""
    from .report import error

    error(err_console, str(err))
    if err.details:
        err_console.print(err.details, markup=False, highlight=False, soft_wrap=True)
    if smoke is not None:
        from .smoke import summary

        smoke_line(summary(False, smoke, one_line(err), 0, None), as_json)
    raise typer.Exit(err.exit_code) from None


def out_dir(out: Path | None, output_dir: str, name: str, command: str) -> Path:
    """The run's folder, created and proved writable before any work (ConfigError if not).

    `--out DIR` must not hold another run's files. Without it each run gets a folder of its
    own, `output_dir/name/<timestamp>-<command>`, with `-2`, `-3`, ... when a run started in
    the same second took the name. Under torchrun only rank 0 creates it: it alone writes.
    """
    from .history import fresh_folder, new_run_folder

    if out is not None:
        return fresh_folder(out)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if _launched_rank() != 0:
        return Path(output_dir) / name / f"{stamp}-{command}"
    return new_run_folder(Path(output_dir) / name, f"{stamp}-{command}")


def _launched_rank() -> int:
    """torchrun's RANK, read before the process group exists (0 without torchrun)."""
    return int(os.environ.get("RANK", "0"))


@contextmanager
def discarded_if_empty(folder: Path, out: Path | None) -> Iterator[Path]:
    """Remove a run folder lrtool named (no --out) if the run ends before writing into it."""
    try:
        yield folder
    finally:
        if out is None:
            with suppress(OSError):  # not empty, or already gone: keep it as it is
                folder.rmdir()


def stdout_console(as_json: bool) -> Console:
    """Human output goes to stdout, except with --json, where stdout is kept for the JSON."""
    from . import distributed

    return err_console if as_json else Console(quiet=not distributed.is_main())


def emit_json(data: dict[str, Any], folder: Path | None = None) -> None:
    """Print the result JSON; with `folder`, also where its files went (`"folder"`)."""
    from . import distributed
    from .history import to_json

    if folder is not None:
        data = {**data, "folder": str(folder)}
    if distributed.is_main():
        typer.echo(to_json(data), nl=False)


@contextmanager
def data_parallel(device_spec: str) -> Iterator[bool]:
    """Under torchrun: join the process group; only rank 0 prints and writes. Yields is-main."""
    from . import distributed

    distributed.init(device_spec)
    main = distributed.is_main()
    err_console.quiet = not main
    try:
        yield main
    finally:
        distributed.shutdown()


def show_chart(console: Console, chart: str) -> None:
    from .report import show_chart as show

    show(console, chart)


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
        from .build import smoke_step
        from .config import load_experiment
        from .probe import checked_build
        from .report import check_report

        exp = load_experiment(experiment, set_, {"device": device, "seed": seed})
        built = checked_build(exp)  # a mismatch of model and data, said in the file's keys
        loss = smoke_step(built)  # then backward, and a first loss that must be finite
        check_report(Console(), built, loss)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the experiment file (for editor autocompletion)."""
    from .config import json_schema

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
    grad_accum: Annotated[
        int | None, typer.Option(help="Mini-batches per step (default 1).", show_default=False)
    ] = None,
    precision: Annotated[
        str | None, typer.Option(help="fp32, bf16 or fp16 (default fp32).", show_default=False)
    ] = None,
    clip_grad_norm: Annotated[
        float | None, typer.Option(help="Clip the gradient norm.", show_default=False)
    ] = None,
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
        from .config import load_experiment
        from .history import save_find
        from .report import sweep_progress
        from .run import parse_seeds, run_find

        values = {
            "find.start_lr": start_lr,
            "find.end_lr": end_lr,
            "find.num_steps": num_steps,
            "find.mode": mode,
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
        seed_list = parse_seeds(seeds, exp.seed)
        if smoke:
            smoke_find(exp, out, smoke_batches, smoke_timeout, as_json)
            return
        folder = out_dir(out, exp.output_dir, exp.name, "find")
        with discarded_if_empty(folder, out), data_parallel(exp.device) as main:
            result = run_find(
                exp,
                seed_list,
                progress=lambda label: sweep_progress(err_console, exp.find.num_steps, label),
            )
            if main:
                save_find(folder, result, exp)
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
    (err_console if as_json else Console()).print(
        line, markup=False, highlight=False, soft_wrap=True
    )


@contextmanager
def smoke_reporting(as_json: bool) -> Iterator[None]:
    """Print a failed smoke run's summary line, then let `handled` pick the exit code."""
    try:
        yield
    except LrtoolError as err:
        smoke_line(str(err), as_json)
        raise typer.Exit(err.exit_code) from None


def smoke_find(exp: Any, out: Path | None, batches: int, timeout: float, as_json: bool) -> None:
    from .history import save_find
    from .run import find_built, sweep_middle
    from .smoke import run_smoke, temp_out

    def body(built: Any) -> tuple[str, list[float], Any]:
        result = find_built(built)
        if result.stop_reason == "nan":
            from .smoke import SmokeFailed

            raise SmokeFailed(f"the loss became NaN/inf at step {result.steps + 1} of the sweep.")
        return f"{result.steps} steps", result.loss, result

    mid = sweep_middle(exp)
    if out is not None:
        out = out_dir(out, exp.output_dir, exp.name, "find")  # checked before the run
    with smoke_reporting(as_json):
        line, result = run_smoke("find", exp, batches, timeout, mid, body)
    folder = temp_out(out)
    save_find(folder, result, exp)
    if as_json:
        emit_json(result.to_dict(), folder)
    smoke_line(line, as_json)


def render_find(console: Console, result: Any, folder: Path, *, plot: bool) -> None:
    from .report import find_summary

    if plot:
        from .plot import find_chart, multi_find_chart

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
            )
        show_chart(console, chart)
    find_summary(console, result, str(folder))


def _moms(text: str | None) -> list[float] | None:
    if text is None:
        return None
    from .errors import ConfigError

    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(f"--moms expects three comma-separated numbers, got {text!r}.") from None
    return values


def _eval_every(text: str | None) -> str | int | None:
    if text is None or text == "epoch":
        return text
    from .errors import ConfigError

    try:
        return int(text)
    except ValueError:
        raise ConfigError(
            f"--eval-every expects 'epoch' or a number of steps, got {text!r}."
        ) from None


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
    grad_accum: Annotated[
        int | None, typer.Option(help="Mini-batches per step (default 1).", show_default=False)
    ] = None,
    precision: Annotated[
        str | None, typer.Option(help="fp32, bf16 or fp16.", show_default=False)
    ] = None,
    clip_grad_norm: Annotated[
        float | None, typer.Option(help="Clip the gradient norm.", show_default=False)
    ] = None,
    eval_every: Annotated[
        str | None,
        typer.Option(help="'epoch' or a number of steps (default epoch).", show_default=False),
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
        from .config import load_experiment

        values = {
            "train.lr_max": lr_max,
            "train.epochs": epochs,
            "train.pct_start": pct_start,
            "train.div_factor": div_factor,
            "train.final_div_factor": final_div_factor,
            "train.moms": _moms(moms),
            "train.anneal": anneal,
            "train.freeze_epochs": freeze_epochs,
            "train.grad_accum": grad_accum,
            "train.precision": precision,
            "train.clip_grad_norm": clip_grad_norm,
            "train.eval_every": _eval_every(eval_every),
            "device": device,
            "seed": seed,
        }
        exp = load_experiment(experiment, set_, values)
        if exp.train.lr_max is None and resume is None:
            from .errors import ConfigError

            raise ConfigError(
                "train needs a peak rate: --lr-max 3e-3 (or LOW:HIGH, :HIGH, auto), or "
                "train.lr_max in the experiment file."
            )
        if smoke:
            smoke_train(exp, out, smoke_batches, smoke_timeout, as_json)
            return
        rates = None
        if resume is not None:
            from .errors import ConfigError
            from .history import writable_folder
            from .run import prepare_resume, resume_paths

            folder, _ = resume_paths(resume)
            if out is not None and out.resolve() != folder.resolve():
                raise ConfigError("--resume continues in its own folder: leave out --out.")
            resumed = prepare_resume(exp, resume, lr_max_given=lr_max is not None)
            writable_folder(folder, "--resume")  # it exists (it holds the checkpoint)
            exp, rates, resume = resumed.experiment, resumed.lr_max, resumed.checkpoint
        else:
            folder = out_dir(out, exp.output_dir, exp.name, "train")
        with discarded_if_empty(folder, out) if resume is None else nullcontext():
            with data_parallel(exp.device):
                run_train(
                    exp,
                    folder,
                    resume=resume,
                    lr_max=rates,
                    refind=refind,
                    as_json=as_json,
                    plot=want_plot(plot, as_json),
                    resume_command=resume_command(ctx, folder),
                )


def resume_command(ctx: typer.Context, folder: Path) -> str:
    """The command that continues this train run: what was typed, with --resume FOLDER.

    Rebuilt from every option given on the command line (so each setting the run started
    with comes back and the resume is not refused); the rate comes from the checkpoint, and
    options that only choose the output or the display are left out.
    """
    import shlex

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


def run_train(
    exp: Any,
    folder: Path,
    *,
    resume: Path | None,
    refind: bool,
    as_json: bool,
    plot: bool,
    lr_max: float | list[float] | str | None = None,
    resume_command: str | None = None,
) -> None:
    """Train (after the finder with `auto`); `resume` is a checkpoint file and `lr_max` its
    rates (see run.prepare_resume). `resume_command` is printed when Ctrl-C stops the run."""
    from . import distributed
    from .errors import NoSuggestion, RunFailed
    from .history import save_find, save_train
    from .probe import checked_build
    from .report import sweep_progress, train_progress, train_summary
    from .run import find_built, train_built
    from .train import CHECKPOINT_NAME

    main = distributed.is_main()
    console = stdout_console(as_json)
    built = checked_build(exp)
    lr_max = exp.train.lr_max if lr_max is None else lr_max
    first_find = None
    if lr_max == "auto":
        with sweep_progress(err_console, exp.find.num_steps) as on_step:
            first_find = find_built(built, on_step)
        if main:
            save_find(folder, first_find, exp)
        if first_find.stop_reason == "interrupted":
            raise KeyboardInterrupt
        if first_find.suggested_lr is None:
            raise NoSuggestion(
                f"--lr-max auto: the finder could not suggest a rate ({first_find.warning}). "
                f"Its curve is in {folder / 'find.json'}; pick a rate and pass --lr-max."
            )
        lr_max = first_find.suggested_lr
        console.print(f"--lr-max auto: training at {lr_max:.2e} ({first_find.suggestion_method})")
    steps = -(-len(built.train_data) // exp.train.grad_accum)
    total = exp.train.epochs + exp.train.freeze_epochs
    with train_progress(err_console, steps, total) as (on_step, on_epoch):
        result = train_built(
            built,
            lr_max,
            checkpoint=folder if main else None,
            resume=resume,
            on_step=on_step,
            on_epoch=on_epoch,
        )
    # Ctrl-C put the model back to the checkpoint's weights (those `final` describes); with
    # no checkpoint yet there are no weights worth keeping.
    resumable = (folder / CHECKPOINT_NAME).is_file()
    keep_model = result.stop_reason != "interrupted" or resumable
    if main:
        save_train(folder, result, exp, distributed.unwrap(built.model) if keep_model else None)
    refound = None
    if refind and result.stop_reason == "completed":
        with sweep_progress(err_console, exp.find.num_steps, "refind") as on_step:
            refound = find_built(built, on_step)
        refound.kind = "refind"
        if main:
            save_find(folder, refound, exp, stem="refind")
    if plot:
        from .plot import compare_chart, train_charts

        h = result.history
        color = console.is_terminal  # without colour, curves differ by glyph
        show_chart(console, train_charts(h["step"], h["loss"], h["lr"], h["momentum"], color=color))
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
            show_chart(console, compare_chart(curves, title=title, color=color))
    train_summary(console, result, str(folder))
    if refound is not None:
        console.print(refind_advice(refound))
    if result.stop_reason == "interrupted":
        if resumable and resume_command:
            console.print(
                f"to resume: {resume_command}", markup=False, highlight=False, soft_wrap=True
            )
        elif not resumable:
            console.print("stopped before the first epoch ended: no checkpoint to resume from.")
    if as_json:
        emit_json(result.to_dict(), folder)
    if result.stop_reason == "interrupted":
        raise KeyboardInterrupt
    if result.stop_reason == "nan":
        raise RunFailed(
            f"the training loss became NaN/inf at step {result.nan_step} "
            f"(lr {result.nan_lr:.2e}); the history up to then is in {folder}. Lower --lr-max, "
            "or clip gradients (train.clip_grad_norm)."
        )


def refind_advice(refound: Any) -> str:
    """After training the curve is flat, then rises: use a tenth of the start of the rise."""
    from .run import refind_rise

    start = refind_rise(refound.lr, refound.loss)
    if start is None:
        return "refind: the loss does not rise within the sweep; no rate to advise."
    return (
        f"refind: the loss starts to rise near {start:.2e}; to keep training this model, "
        f"use about {start / 10:.2e} (the rise / 10). Saved as refind.json."
    )


def smoke_train(exp: Any, out: Path | None, batches: int, timeout: float, as_json: bool) -> None:
    from .history import save_train
    from .run import find_built, sweep_middle, train_built
    from .smoke import SmokeFailed, run_smoke, temp_out

    def body(built: Any) -> tuple[str, list[float], Any]:
        lr_max = exp.train.lr_max
        if lr_max == "auto":
            found = find_built(built)
            lr_max = found.suggested_lr or sweep_middle(exp)
        result = train_built(built, lr_max)
        if result.stop_reason == "nan":
            raise SmokeFailed(
                f"the training loss became NaN/inf at step {result.nan_step} "
                f"(lr {result.nan_lr:.2e})."
            )
        return f"{len(result.history['step'])} steps", result.history["loss"], (result, built)

    lr = _check_rate(exp)
    if out is not None:
        out = out_dir(out, exp.output_dir, exp.name, "train")  # checked before the run
    with smoke_reporting(as_json):
        line, (result, built) = run_smoke("train", exp, batches, timeout, lr, body)
    folder = temp_out(out)
    save_train(folder, result, exp, built.model)
    if as_json:
        emit_json(result.to_dict(), folder)
    smoke_line(line, as_json)


def _check_rate(exp: Any) -> float:
    """The rate the smoke run's learning check uses: the head's peak, or mid-sweep for auto."""
    from .run import sweep_middle
    from .train import parse_lr_max

    if exp.train.lr_max == "auto":
        return sweep_middle(exp)
    return max(parse_lr_max(exp.train.lr_max, 1))


@app.command("plot")
def plot_cmd(
    file: Annotated[
        Path,
        typer.Argument(help="A saved find.json, refind.json, train.json or verify.json."),
    ],
    save: Annotated[
        Path | None, typer.Option(help="Write a PNG (needs the 'plot' extra).", show_default=False)
    ] = None,
    plot: DrawOpt = True,
    set_: SetOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Redraw a saved result in the terminal (or as a PNG); --no-plot prints its table.

    --set find.suggest=METHOD or find.smoothing=BETA redraws a find/refind curve with another
    suggestion method or smoothing, from the saved raw loss.
    """
    with handled(debug):
        from .history import history_kind, read_json
        from .plot import find_chart, save_png, train_charts, verify_chart
        from .report import compare_table
        from .saved import redraw_settings, resuggested

        if save is not None:
            from .history import writable_folder

            writable_folder(save.parent, "--save")  # before reading, drawing and failing
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
            err_console.print(f"saved {save}")
            return
        console = Console()
        if not plot:
            console.print(compare_table(kind, [file.name], [data]))
            return
        color = console.is_terminal
        if kind == "verify":
            chart = verify_chart(
                data.get("candidates") or [],
                metric=data.get("metric", "val_loss"),
                best=data.get("best_lr"),
                color=color,
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
            )
        else:
            h = data["history"]
            chart = train_charts(h["step"], h["loss"], h["lr"], h.get("momentum"), color=color)
        show_chart(console, chart)


def _curve_of(kind: str, label: str, data: dict[str, Any]) -> dict[str, Any]:
    """The curve a saved result contributes to compare (and to a PNG)."""
    if kind == "verify":
        metric = data.get("metric", "val_loss")
        ran = [c for c in data.get("candidates") or [] if c.get("rounds")]
        return {
            "label": label,
            "lr": [c["lr"] for c in ran],
            "y": [c["rounds"][0].get(metric) for c in ran],
        }
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
            help="Candidate peak rates, e.g. 1e-3,3e-3,1e-2 (default: the "
            "suggestion x 1/10, 1/3, 1, 3, 10).",
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
            min=1,
            help="Epochs of the real training, which the final round trains (train.epochs; "
            "default 5).",
            show_default=False,
        ),
    ] = None,
    max_epochs: Annotated[
        int | None,
        typer.Option(
            "--max-epochs",
            min=1,
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
        from .config import load_experiment
        from .errors import ConfigError

        if lrs is not None and from_ is not None:
            raise ConfigError("--lrs and --from both choose the candidates: give one.")
        if epochs is not None and max_epochs is not None:
            raise ConfigError("--max-epochs is the old name of --epochs: give one.")
        exp = load_experiment(
            experiment,
            set_,
            {"device": device, "seed": seed, "train.epochs": epochs or max_epochs},
        )
        if smoke:
            smoke_verify(exp, lrs, out, smoke_batches, smoke_timeout, as_json)
            return
        folder = out_dir(out, exp.output_dir, exp.name, "verify")
        with data_parallel(exp.device) as main:
            run_verify(
                exp,
                folder,
                lrs=lrs,
                from_=from_,
                main=main,
                as_json=as_json,
                plot=want_plot(plot, as_json),
            )


def _verify_candidates(
    exp: Any, folder: Path, lrs: str | None, from_: Path | None, main: bool
) -> tuple[list[float], float | None, str, float | None]:
    """The rates to try, the suggestion (None without one), where the centre came from
    ("lrs", "suggestion" or "loss_minimum") and the centre itself."""
    from .history import read_json, save_find
    from .probe import checked_build
    from .report import sweep_progress
    from .run import find_built
    from .verify import BRACKET_MIN_POINTS, bracket_centre, candidate_rates, parse_lrs

    if lrs is not None:
        return parse_lrs(lrs), None, "lrs", None
    if from_ is not None:
        data = read_json(from_)
        suggested, history = data.get("suggested_lr"), data.get("history") or {}
        source = str(from_)
    else:
        with sweep_progress(err_console, exp.find.num_steps) as on_step:
            found = find_built(checked_build(exp), on_step)
        if main:
            save_find(folder, found, exp)
        if found.stop_reason == "interrupted":
            raise KeyboardInterrupt
        suggested, history, source = found.suggested_lr, found.history, "the finder"
    if suggested is not None:
        return candidate_rates(suggested), suggested, "suggestion", suggested
    # No suggestion: bracket the curve's robust raw-loss minimum instead.
    centre = bracket_centre(history.get("lr") or [], history.get("loss") or [])
    if centre is None:
        raise NoSuggestion(
            f"verify: {source} has no suggested rate, and its curve has too few usable points "
            f"to find its lowest loss (at least {BRACKET_MIN_POINTS} finite ones needed): run "
            "the finder with more steps (find.num_steps) or give the candidates with --lrs."
        )
    return candidate_rates(centre), None, "loss_minimum", centre


def run_verify(
    exp: Any,
    folder: Path,
    *,
    lrs: str | None,
    from_: Path | None,
    main: bool,
    as_json: bool,
    plot: bool,
) -> None:
    from .config import resolved
    from .history import write_json
    from .report import fmt_lr, verify_round_table
    from .verify import BRACKET_DIVISOR, ranking_metric, verify_rates

    console = stdout_console(as_json)
    rates, suggested, centre, centre_lr = _verify_candidates(exp, folder, lrs, from_, main)
    metric, higher = ranking_metric(exp)
    if centre == "loss_minimum":
        console.print(
            f"verify: no suggested rate; the candidates surround the lowest point of the loss "
            f"curve / {BRACKET_DIVISOR:g} = {fmt_lr(centre_lr)}"
        )
    console.print(
        f"verify: {len(rates)} candidates ({', '.join(fmt_lr(r) for r in rates)}), "
        f"ranked by {metric}; the final round trains the real {exp.train.epochs} epochs"
    )

    def on_run(round_number: int, lr: float, epochs: float) -> None:
        err_console.print(
            f"  round {round_number}: training lr {fmt_lr(lr)} for {epochs:g} "
            f"epoch{'' if epochs == 1 else 's'}",
            highlight=False,
        )

    def on_round(round_number: int, rows: list[dict[str, Any]]) -> None:
        console.print(verify_round_table(round_number, rows, metric))

    result = verify_rates(exp, rates, suggested_lr=suggested, on_round=on_round, on_run=on_run)
    result.centre, result.centre_lr = centre, centre_lr
    result.config = resolved(exp)
    if main:
        write_json(folder / "verify.json", result.to_dict())
    if plot and result.candidates:
        from .plot import metric_vs_lr_chart

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
            ),
        )
    if result.widened:
        console.print(
            "the winner was at the edge of the rates tried: widened with "
            + ", ".join(fmt_lr(r) for r in result.widened)
        )
    if result.best_lr is not None:
        note = f" (the suggestion was {fmt_lr(suggested)})" if suggested else ""
        console.print(f"[bold green]best_lr = {fmt_lr(result.best_lr)}[/]{note}")
    else:
        console.print("[yellow]no candidate finished without diverging[/]")
    console.print(
        f"cost: {result.budget_epochs_total:g} epochs in all, "
        f"{result.cost_vs_one_training:g} x one training of {result.full_epochs} epochs"
    )
    console.print(f"files: {folder}")
    if as_json:
        emit_json(result.to_dict(), folder)
    if result.stop_reason == "interrupted":
        raise KeyboardInterrupt


def smoke_verify(
    exp: Any, lrs: str | None, out: Path | None, batches: int, timeout: float, as_json: bool
) -> None:
    from .history import write_json
    from .run import find_built, sweep_middle
    from .smoke import run_smoke, temp_out
    from .verify import candidate_rates, parse_lrs, verify_rates

    def body(built: Any) -> tuple[str, list[float], Any]:
        if lrs is not None:
            rates = parse_lrs(lrs)[:2]
        else:
            found = find_built(built)
            centre = found.suggested_lr or sweep_middle(exp)
            rates = candidate_rates(centre, (1 / 3, 1.0))
        smoke_exp = built.experiment
        # One round of 1 epoch at two rates: a smoke run checks it runs, not which rate wins.
        result = verify_rates(smoke_exp, rates, max_epochs=1, max_widenings=0)
        losses = [r.get("val_loss") for c in result.candidates for r in c["rounds"]]
        return f"{len(rates)} candidates, 1 round", [v for v in losses if v is not None], result

    mid = sweep_middle(exp)
    if out is not None:
        out = out_dir(out, exp.output_dir, exp.name, "verify")  # checked before the run
    with smoke_reporting(as_json):
        line, result = run_smoke("verify", exp, batches, timeout, mid, body)
    folder = temp_out(out)
    write_json(folder / "verify.json", result.to_dict())
    if as_json:
        emit_json(result.to_dict(), folder)
    smoke_line(line, as_json)


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
    set_: SetOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Overlay several saved curves in one chart and tabulate their suggestions."""
    with handled(debug):
        from .errors import ConfigError
        from .history import history_kind, read_json
        from .plot import compare_chart
        from .report import compare_table
        from .saved import redraw_settings, resuggested

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
        console = Console()
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
            )
            show_chart(console, chart)
        console.print(compare_table(kind, names, datas))


def _labels(text: str | None, files: list[Path]) -> list[str]:
    if text is None:
        return [str(f) for f in files]
    names = [n.strip() for n in text.split(",")]
    if len(names) != len(files):
        from .errors import ConfigError

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
    app()
