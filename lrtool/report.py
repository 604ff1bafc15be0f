"""What the terminal shows: rich tables, progress bars and the error paragraph.

Everything here writes to a rich Console given by the caller; nothing here computes results.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .config import dump_yaml
from .history import FindResult

if TYPE_CHECKING:  # build imports torch; the CLI imports this module before any torch
    from .build import Built

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def show_chart(console: Console, chart: str) -> None:
    """Print a plotext chart as it is; without its colour codes when not on a terminal, so a
    chart saved with `--plot > file` stays readable."""
    if not console.encoding.lower().replace("-", "").startswith("utf"):
        # Braille dots and box lines would print as rows of '?'.
        console.print(
            f"(chart left out: this terminal's encoding, {console.encoding}, cannot show its "
            "characters; `lrtool plot FILE.json --save chart.png` draws it as an image)",
            markup=False,
            highlight=False,
        )
        return
    if not console.is_terminal:
        chart = _ANSI.sub("", chart)
    console.print(chart, markup=False, highlight=False, soft_wrap=True)


def fmt_lr(value: float | None) -> str:
    return "—" if value is None else f"{value:.2e}"


def error(console: Console, message: str) -> None:
    """The one paragraph a user sees when something is wrong: plain text, easy to copy."""
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


@contextmanager
def sweep_progress(console: Console, total: int, label: str = "find") -> Iterator[Any]:
    """A progress bar for the sweep; yields the on_step callback for `find_lr`."""
    progress = Progress(
        TextColumn(f"[bold]{label}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("lr {task.fields[lr]}  smoothed loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )

    task = progress.add_task(label, total=total, lr="—", loss="—")

    def on_step(step: int, lr: float, smoothed: float) -> None:
        progress.update(task, completed=step, lr=fmt_lr(lr), loss=f"{smoothed:.4f}")

    with progress:
        yield on_step


def suggestions_table(result: FindResult) -> Table:
    table = Table(title="Suggested learning rates", title_justify="left")
    table.add_column("method")
    table.add_column("lr", justify="right")
    for method, value in result.suggestions.items():
        default = method == result.suggestion_method
        style = "bold green" if default else ""
        name = f"{method} (default)" if default else method
        table.add_row(name, fmt_lr(value), style=style)
    return table


def find_summary(console: Console, result: FindResult, out_dir: str) -> None:
    console.print(suggestions_table(result))
    if result.seeds:
        per_seed = ", ".join(f"seed {s['seed']} {fmt_lr(s['suggested_lr'])}" for s in result.seeds)
        spread = "—" if result.spread is None else f"{result.spread:.1f}x"
        console.print(
            f"per seed: {per_seed}; consensus {fmt_lr(result.consensus_lr)}, spread {spread}"
        )
    console.print(
        f"stop reason: [bold]{result.stop_reason}[/] after {result.steps} steps "
        f"({result.elapsed_s:.2f} s on {result.device})"
    )
    console.print(batch_line(result))
    if result.suggested_lr is not None:
        console.print(
            f"[bold green]suggested_lr = {fmt_lr(result.suggested_lr)}[/] "
            f"({result.suggestion_method})"
        )
    if result.warning:
        console.print(f"[yellow]warning:[/] {result.warning}")
    console.print(f"files: {out_dir}")


def check_report(console: Console, built: Built, loss_value: float) -> None:
    exp = built.experiment
    # A str title would be parsed for markup and emoji codes ("[bold]", ":three:"); a Text
    # is printed as written.
    title = Text(f"experiment {exp.name}")
    console.print(Panel(Text(dump_yaml(exp).rstrip()), title=title, expand=False))
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("device", str(built.device))
    table.add_row("parameters", f"{built.parameter_count:,}")
    table.add_row("data", built.data_note)
    for note in built.model_notes:  # where the weights came from, a replaced head
        table.add_row("model", note)
    table.add_row(
        "samples",
        f"train {built.train_data.num_samples:,} · val {built.val_data.num_samples:,} "
        f"({len(built.train_data)} training batches of {built.batch_size}"
        + (
            f": data.batch_size {exp.data.batch_size} is more than the training split"
            if built.batch_size < exp.data.batch_size
            else ""
        )
        + ")",
    )
    for group, name in zip(built.optimizer.param_groups, built.group_names, strict=True):
        count = sum(p.numel() for p in group["params"])
        table.add_row(f"group {name}", f"{count:,} parameters")
    table.add_row("first batch", f"loss {loss_value:.4f} (forward + backward ok)")
    console.print(table)


@contextmanager
def train_progress(console: Console, steps_per_epoch: int, total_epochs: int) -> Iterator[Any]:
    """A progress bar per epoch with the live loss, and one line after each epoch.

    Yields (on_step, on_epoch) callbacks for `fit_one_cycle`.
    """
    progress = Progress(
        TextColumn("[bold]epoch {task.fields[epoch]}/" + str(total_epochs) + "[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    state = {"epoch": 1, "task": None}

    def new_task() -> None:
        state["task"] = progress.add_task(
            "train", total=steps_per_epoch, epoch=state["epoch"], loss="—", lr="—"
        )

    def on_step(step: int, lr: float, loss: float | None) -> None:
        done = step - (state["epoch"] - 1) * steps_per_epoch
        progress.update(
            state["task"],
            completed=done,
            lr=fmt_lr(lr),
            loss="nan" if loss is None else f"{loss:.4f}",
        )

    def on_epoch(record: dict[str, Any]) -> None:
        progress.remove_task(state["task"])
        progress.console.print(epoch_line(record))
        # The bar counts this display's own epochs: under train.cycles the record's epoch
        # numbers on across cycles, while each cycle has a display of its own.
        state["epoch"] += 1
        if state["epoch"] <= total_epochs:
            new_task()

    with progress:
        new_task()
        yield on_step, on_epoch


def _fmt(value: Any, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def epoch_line(record: dict[str, Any]) -> str:
    skip = {"epoch", "phase", "train_loss", "val_loss", "seconds"}
    metrics = "  ".join(f"{k} {_fmt(v)}" for k, v in record.items() if k not in skip)
    phase = " (frozen)" if record.get("phase") == "frozen" else ""
    return (
        f"epoch {record['epoch']}{phase}: train loss {_fmt(record['train_loss'])}  "
        f"val loss {_fmt(record['val_loss'])}  {metrics}  {record['seconds']:.1f} s"
    )


def train_summary(console: Console, result: Any, out_dir: str) -> None:
    table = Table(title="One-cycle training", title_justify="left")
    keys = [k for k in (result.epochs[0] if result.epochs else {}) if k != "phase"]
    for key in keys:
        table.add_column(key.replace("_", " "), justify="right")
    for record in result.epochs:
        table.add_row(
            *[
                str(record[k]) if k == "epoch" else _fmt(record[k], 1 if k == "seconds" else 4)
                for k in keys
            ]
        )
    console.print(table)
    rates = result.group_lrs_at_peak
    if rates and len(rates) > 1:
        pairs = ", ".join(
            f"{name} {fmt_lr(r)}" for name, r in zip(result.group_names, rates, strict=True)
        )
        # A run stopped in its warm-up never reached its peak: the rates are the highest seen.
        label = "peak rates" if result.stop_reason == "completed" else "highest rates reached"
        console.print(f"{label} per group: {pairs}", markup=False)  # group names are the user's
    console.print(batch_line(result))
    final = ", ".join(f"{k} {_fmt(v)}" for k, v in result.final.items())
    console.print(f"final: {final}  ({result.elapsed_s:.1f} s on {result.device})")
    console.print(f"files: {out_dir}")


def compare_table(kind: str, names: list[str], datas: list[dict[str, Any]]) -> Table:
    """One column per saved run: its suggestions (finds), its final metrics (training) or its
    best rate (verify)."""
    table = Table(title_justify="left")
    table.add_column("")
    for name in names:
        table.add_column(name, justify="right")
    if kind == "find":
        table.title = "Suggestions"
        table.add_row(
            "suggested_lr", *[fmt_lr(d.get("suggested_lr")) for d in datas], style="bold green"
        )
        methods = list(dict.fromkeys(m for d in datas for m in (d.get("suggestions") or {})))
        for method in methods:
            table.add_row(
                method, *[fmt_lr((d.get("suggestions") or {}).get(method)) for d in datas]
            )
        table.add_row("stop reason", *[str(d.get("stop_reason", "—")) for d in datas])
        table.add_row("steps", *[str(d.get("steps", "—")) for d in datas])
        return table
    if kind == "verify":
        table.title = "Verified rates"
        table.add_row("best_lr", *[fmt_lr(d.get("best_lr")) for d in datas], style="bold green")
        table.add_row("suggested_lr", *[fmt_lr(d.get("suggested_lr")) for d in datas])
        table.add_row("ranked by", *[str(d.get("metric", "—")) for d in datas])
        table.add_row("best's score", *[_fmt(_best_score(d)) for d in datas])
        table.add_row("candidates", *[str(len(d.get("candidates") or [])) for d in datas])
        table.add_row("epochs in all", *[str(d.get("budget_epochs_total", "—")) for d in datas])
        return table
    table.title = "Final metrics"
    lrs = []
    for d in datas:
        lr = d.get("lr_max")
        lrs.append(", ".join(fmt_lr(v) for v in lr) if isinstance(lr, list) else fmt_lr(lr))
    table.add_row("lr_max", *lrs)
    keys = list(dict.fromkeys(k for d in datas for k in (d.get("final") or {})))
    for key in keys:
        table.add_row(key, *[_fmt((d.get("final") or {}).get(key)) for d in datas])
    return table


def _best_score(data: dict[str, Any]) -> Any:
    """The metric of a verify run's best rate, from the last round it trained in."""
    for candidate in data.get("candidates") or []:
        if candidate.get("lr") == data.get("best_lr") and candidate.get("rounds"):
            return candidate["rounds"][-1].get(data.get("metric", "val_loss"))
    return None


def batch_line(result: Any) -> str:
    """A rate belongs to the batch size it was found with: say which one that was."""
    text = f"effective batch size {result.effective_batch_size}"
    if result.world_size > 1:
        text += f" ({result.world_size} processes)"
    return text


def verify_round_table(round_number: int, rows: list[dict[str, Any]], metric: str) -> Table:
    """One round of successive halving: each candidate's score, its rank, who goes on."""
    table = Table(title=f"verify round {round_number}", title_justify="left")
    table.add_column("lr", justify="right")
    table.add_column("epochs", justify="right")
    table.add_column("val loss", justify="right")
    if metric != "val_loss":
        table.add_column(metric, justify="right")
    table.add_column("rank", justify="right")
    table.add_column("")
    for row in rows:
        cells = [fmt_lr(row["lr"]), str(row["epochs"]), _fmt(row.get("val_loss"))]
        if metric != "val_loss":
            cells.append(_fmt(row.get(metric)))
        cells += [str(row.get("rank") or "—"), "kept" if row.get("kept") else ""]
        table.add_row(*cells, style="bold green" if row.get("kept") else "")
    return table
