"""The command line of `python -m lrtool.bench`: parse, call one function, print, exit code."""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Sequence

from ..errors import LrtoolError
from .cache import DEFAULT_CACHE
from .tasks import TASKS, design_tasks, held_out_tasks

DESCRIPTION = """\
Benchmarks of lrtool.

  speed    time per step of the sweep and of training against a plain PyTorch loop
  prepare  fill the run cache with every task's grid of one-cycle runs and range tests
  suggest  each suggestion rule's regret against the grid's best rate, per task, as a
           Markdown table (stdout; progress on stderr)
  finetune fine-tuning recipes at equal epochs (pretrained on digits 0-5, then 6-9)

Runs are cached under --cache (one JSON file per run): a rerun, or a run after Ctrl-C,
trains only what is missing.
"""

# suggest_quality.SEEDS as text (that module loads torch: --help should not wait for it).
DEFAULT_SEEDS = "0,1,2,3,4"


class _Usage(Exception):
    """A bad option value: said in one paragraph, exit code 2."""


def _floats(text: str, what: str, count: int | None = None) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise _Usage(f"{what} expects comma-separated numbers, got {text!r}.") from None
    if count is not None and len(values) != count:
        raise _Usage(f"{what} expects {count} comma-separated numbers, got {text!r}.")
    return values


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise _Usage(
            f"--seeds expects comma-separated whole numbers (0,1,2), got {text!r}."
        ) from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise _Usage(f"--seeds expects distinct seeds (0,1,2), got {text!r}.")
    return seeds


def _check_seed_range(seeds: list[int]) -> None:
    from ..config import MAX_SEED  # pydantic only, no torch

    outside = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if outside:
        raise _Usage(f"--seeds: every seed must be from 0 to {MAX_SEED:,}, got {outside[0]}.")


def _writable_cache(cache: str) -> None:
    """The cache folder is made and written to before any run: a run that trained for
    minutes must not fail when it is saved."""
    from ..errors import ConfigError
    from ..history import writable_folder

    if not cache.strip():
        # `--cache "$CACHE"` with CACHE unset: the runs would land in the current folder.
        raise _Usage("--cache is empty (an unset shell variable?): give the cache folder.")

    try:
        writable_folder(cache, "--cache")
    except ConfigError as err:
        raise _Usage(str(err)) from None


def _task_names(args: argparse.Namespace) -> list[str]:
    if args.tasks:
        # A task named twice is one column, trained once: count it once.
        names = list(dict.fromkeys(n.strip() for n in args.tasks.split(",") if n.strip()))
        unknown = [n for n in names if n not in TASKS]
        if unknown or not names:
            raise _Usage(
                f"--tasks: unknown task {', '.join(unknown) or repr(args.tasks)}. Tasks: "
                f"{', '.join(TASKS)}."
            )
        return names
    if args.held_out:
        return held_out_tasks()
    if args.design:
        return design_tasks()
    return list(TASKS)


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--tasks", help="comma-separated task names (default: every task)")
    which.add_argument("--held-out", action="store_true", help="the held-out tasks only")
    which.add_argument("--design", action="store_true", help="the design tasks only")
    parser.add_argument("--cache", default=DEFAULT_CACHE, help="run cache folder")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument(
        "--seeds",
        default=DEFAULT_SEEDS,
        help="seeds of every grid run and range test (default: %(default)s)",
    )
    parser.add_argument("--per-decade", type=int, default=4, help="grid rates per decade")
    parser.add_argument("--grid", default="1e-5,10", help="lowest,highest peak rate of the grid")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m lrtool.bench",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = top.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("speed", help="time per step against a plain PyTorch loop")
    sp.add_argument("--device", default="cpu")
    sp.add_argument("--repeats", type=int, default=5)
    sp.add_argument("--steps", type=int, default=200)
    pp = sub.add_parser("prepare", help="fill the cache with the grids and range tests")
    _add_run_options(pp)
    sq = sub.add_parser("suggest", help="regret of each suggestion rule, as a Markdown table")
    _add_run_options(sq)
    sq.add_argument(
        "--verify",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the `lrtool verify` row and its cost (default: on; --no-verify trains no verify)",
    )
    fp = sub.add_parser(
        "finetune", help="fine-tuning recipes at equal epochs (pretrained on digits 0-5, then 6-9)"
    )
    fp.add_argument("--seeds", default="0,1,2", help="(default: %(default)s)")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from ..cli import interrupt_on_sigterm

    # `kill` or a job scheduler stops the benchmark as Ctrl-C does: the finished runs stay in
    # the cache and the worker processes are shut down, not orphaned.
    interrupt_on_sigterm()
    try:
        if args.command == "speed":
            if args.repeats < 1 or args.steps < 1:
                raise _Usage("--repeats and --steps must be at least 1.")
            if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", args.device):
                raise _Usage(
                    f"--device expects auto, cpu, cuda, cuda:N or mps, got {args.device!r}."
                )
            from ..runtime import resolve_device

            resolve_device(args.device)  # one that is not here: said before the table starts
            from .speed import speed

            speed(args.device, args.repeats, args.steps)
            return 0
        if args.command == "finetune":
            from .finetune import main as finetune

            seeds = _seeds(args.seeds)
            _check_seed_range(seeds)
            print(finetune(seeds))
            return 0
        names = _task_names(args)
        seeds = _seeds(args.seeds)
        low, high = _floats(args.grid, "--grid", 2)
        if not (0 < low < high and math.isfinite(high)):
            raise _Usage(f"--grid expects finite rates, 0 < lowest < highest, got {args.grid!r}.")
        if args.per_decade < 1 or args.jobs < 1:
            raise _Usage("--per-decade and --jobs must be at least 1.")
        if args.per_decade > 100:
            raise _Usage(
                f"--per-decade is at most 100 (a full training each), got {args.per_decade}."
            )
        _check_seed_range(seeds)
        _writable_cache(args.cache)
        from .suggest_quality import grid_rates, tasks_data

        rates = grid_rates(low, high, args.per_decade)
        if args.command == "prepare":
            tasks_data(names, seeds, args.cache, args.jobs, rates)
            print(f"cache {args.cache}: grids and range tests of {len(names)} tasks are complete")
            return 0
        from .table import suggest_report

        print(suggest_report(names, seeds, args.cache, args.jobs, rates, args.verify))
        return 0
    except _Usage as err:
        print(f"python -m lrtool.bench {args.command}: {err}", file=sys.stderr)
        return 2
    except LrtoolError as err:
        # Bad input (a ConfigError, a device that is not there) is exit 2, as in lrtool's CLI;
        # a run that failed keeps its own code.
        print(f"python -m lrtool.bench {args.command}: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(
            "Interrupted. Every finished run is in the cache: the same command continues "
            "from there.",
            file=sys.stderr,
        )
        return 130
