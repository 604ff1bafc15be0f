"""Result objects and their files: JSON and CSV, always written atomically."""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import math
import os
import signal
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from .errors import ConfigError


def versions() -> dict[str, str]:
    import torch

    from . import __version__

    return {"lrtool": __version__, "torch": torch.__version__}


@dataclass
class FindResult:
    """The outcome of one LR range test; `to_dict()` is find.json."""

    suggested_lr: float | None
    suggestion_method: str
    suggestions: dict[str, float | None]
    history: dict[str, list[float]]  # lr, loss, smoothed_loss: column arrays, one per step
    stop_reason: str
    steps: int
    seed: int | None
    device: str
    elapsed_s: float
    warning: str | None = None
    config: dict[str, Any] | None = None
    versions: dict[str, str] = field(default_factory=versions)
    kind: str = "find"
    world_size: int = 1
    effective_batch_size: int | None = None
    # Multi-seed finds only (`--seeds`): each seed's outcome and history, and their consensus.
    seeds: list[dict[str, Any]] | None = None
    consensus_lr: float | None = None
    spread: float | None = None
    # How many seeds ran to the end: the consensus is theirs (Ctrl-C can stop one midway).
    seeds_finished: int | None = None
    seeds_requested: int | None = None
    # A flat sweep goes on past find.end_lr (find.extend_decades): the last rate it reached.
    extended_to: float | None = None

    @property
    def lr(self) -> list[float]:
        return self.history["lr"]

    @property
    def loss(self) -> list[float]:
        return self.history["loss"]

    @property
    def smoothed_loss(self) -> list[float]:
        return self.history["smoothed_loss"]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.seeds is None:
            for key in ("seeds", "consensus_lr", "spread", "seeds_finished", "seeds_requested"):
                data.pop(key)
        return data

    def csv_rows(self) -> tuple[list[str], list[list[Any]]]:
        """find.csv: one row per sweep step, counted from 1 like train.csv and `on_step`."""
        h = self.history
        rows = [
            [i, lr, loss, sm]
            for i, (lr, loss, sm) in enumerate(
                zip(h["lr"], h["loss"], h["smoothed_loss"], strict=True), start=1
            )
        ]
        return ["step", "lr", "loss", "smoothed_loss"], rows


# --- atomic files -------------------------------------------------------------------------


def file_mode() -> int:
    """The mode `open()` would give a new file: 0o666 less the umask (0o644 under umask 022)."""
    # The umask can only be read by setting it; set it straight back.
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def publish(tmp: str | Path, path: str | Path) -> None:
    """Move a finished temp file into place with the mode a plain `open()` would have given.

    mkstemp creates its files 0600 (private); without the chmod every result would be
    unreadable to the rest of a team sharing the runs folder.
    """
    os.chmod(tmp, file_mode())
    os.replace(tmp, path)


@contextlib.contextmanager
def _interrupts_handled_by(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """`handler` for Ctrl-C and SIGTERM within the block, the previous handlers after it. A
    signal the process was told to ignore (a background job's SIGINT) stays ignored; outside
    the main thread signals cannot be caught, and the block runs as is."""
    try:
        previous = {
            sig: signal.signal(sig, handler)
            for sig in (signal.SIGINT, signal.SIGTERM)
            if signal.getsignal(sig) is not signal.SIG_IGN
        }
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for sig, before in previous.items():
            # None: a handler installed outside Python; the default is the nearest we can do.
            signal.signal(sig, signal.SIG_DFL if before is None else before)


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, then raise KeyboardInterrupt: for the
    few writes that belong together (a result's files). Each file is atomic on its own; this
    makes the set so."""
    caught: list[int] = []
    with _interrupts_handled_by(lambda signum, frame: caught.append(signum)):
        yield
    if caught:
        raise KeyboardInterrupt


@contextlib.contextmanager
def first_interrupt_only() -> Iterator[None]:
    """Ctrl-C (or SIGTERM) stops the block once; a second one while the stopped run gathers
    and saves what finished is ignored, so it cannot cut that short and lose it all (a quick
    double Ctrl-C once removed a whole `find --seeds` folder)."""
    seen: list[int] = []

    def once(signum: int, frame: Any) -> None:
        seen.append(signum)
        if len(seen) == 1:
            raise KeyboardInterrupt

    with _interrupts_handled_by(once):
        yield


def write_atomic(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """The one atomic writer: `write(handle)` fills a temp file in the same folder, which is
    then renamed over `path`. Readers never see half a file; Ctrl-C or a full disk leaves the
    previous file whole and no temp file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        publish(tmp, path)
    except BaseException:  # Ctrl-C included
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda handle: handle.write(text.encode("utf-8")))


# --- run folders --------------------------------------------------------------------------

# Every file a run writes into its folder. A folder holding any of them belongs to another run.
RUN_FILES = (
    "find.json",
    "find.csv",
    "refind.json",
    "refind.csv",
    "train.json",
    "train.csv",
    "epochs.csv",
    "verify.json",
    "config.yaml",
    "model.pt",
    "checkpoint.pt",
)


def _why(err: OSError) -> str:
    if isinstance(err, FileExistsError):
        return "it is a file, not a folder"
    if isinstance(err, NotADirectoryError):
        return "a part of the path is a file, not a folder"
    if isinstance(err, PermissionError):
        return "permission denied"
    return err.strerror or str(err)


def writable_folder(path: str | Path, what: str = "--out") -> Path:
    """Create `path` (parents too) and prove a file can be written in it, before any work.

    Checked up front because a run that can only fail at the end, when it saves, has wasted
    the whole run and lost its result. Raises ConfigError naming the folder and the reason.
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise ConfigError(
            f"{what}: cannot write files to {path}: it is a symbolic link to "
            f"{os.readlink(path)}, which does not exist. Create that folder, or give another."
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".lrtool-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ConfigError(
            f"{what}: cannot write files to {path}: {_why(err)}. Choose a folder you can write "
            "to, or fix its permissions."
        ) from None
    return path


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_file(path: str | Path, what: str = "--save") -> Path:
    """Where a chart may go: a .png name in a writable folder, holding nothing or an older PNG.

    Redrawing a chart replaces the PNG it wrote before; any other file there is the user's
    (an experiment, the very JSON being drawn) and is never overwritten.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what}: {path} is a folder; give a file name ending in .png.")
    if path.suffix.lower() != ".png":
        raise ConfigError(
            f"{what} writes a PNG image: give a file name ending in .png, got {str(path)!r}."
        )
    if path.exists():
        try:
            with path.open("rb") as handle:
                head = handle.read(len(PNG_SIGNATURE))
        except OSError as err:
            raise ConfigError(f"{what}: cannot read {path} to check it: {_why(err)}.") from None
        if head != PNG_SIGNATURE:
            raise ConfigError(
                f"{what}: {path} exists and is not a PNG image; lrtool does not overwrite it. "
                "Give another file name."
            )
    writable_folder(path.parent, what)
    return path


def fresh_folder(path: str | Path, what: str = "--out", *, ignore_lock: bool = False) -> Path:
    """A writable `path` that holds no other run's files: results are never overwritten.

    `ignore_lock`: a torchrun rank other than 0, whose rank 0 creates and holds the folder;
    it only looks (creating nothing) for another run's files, or a file in the folder's place.
    """
    path = Path(path)
    if ignore_lock:
        existing = next(p for p in (path, *path.absolute().parents) if p.exists())
        if not existing.is_dir():  # a file where the folder, or one above it, would go
            writable_folder(path, what)  # raises, in the words rank 0 uses
        if path.is_dir():
            _refuse_taken(path, what)
        return path
    path = writable_folder(path, what)
    holder = lock_holder(path)
    if holder is not None:
        raise _held(path, holder, what)
    _refuse_taken(path, what)
    return path


def _refuse_taken(path: Path, what: str) -> None:
    taken = [name for name in RUN_FILES if (path / name).exists()]
    taken += sorted(p.name for p in path.glob("refind-*.json"))  # the re-finds of train.cycles
    if taken:
        raise ConfigError(
            f"{what}: {path} already holds another run's files ({', '.join(taken)}); lrtool "
            "does not overwrite results. "
            + (
                "Give a new folder with --out, or leave --out out for a fresh "
                "runs/<name>/<timestamp>-<command>/ folder."
                if "--out" in what
                else "Give a new folder."
            )
            + (
                " To continue the interrupted training run there: lrtool train "
                f"{path / 'config.yaml'} --resume {path}."
                if "--out" in what and _interrupted_training(path)
                else ""
            )
        )


def _interrupted_training(folder: Path) -> bool:
    """A checkpoint beside a training that did not finish (a finished run keeps its
    checkpoint, and resuming it is refused)."""
    if not (folder / "checkpoint.pt").is_file():
        return False
    try:
        stop = json.loads((folder / "train.json").read_text(encoding="utf-8")).get("stop_reason")
    except (OSError, ValueError, AttributeError):
        return True  # killed before train.json was written: the checkpoint is all there is
    return stop != "completed"


# A run holds this file in its folder while it writes there: a second run given the same
# folder is refused instead of mixing its files with the first's.
LOCK_NAME = ".lrtool-lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # it exists, owned by someone else
    return True


def lock_holder(folder: str | Path) -> int | None:
    """The process holding `folder`'s lock file, if it is still running; else None."""
    lock = Path(folder) / LOCK_NAME
    try:
        pid = int(lock.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 and pid != os.getpid() and _alive(pid) else None


def _held(folder: Path, pid: int, what: str) -> ConfigError:
    return ConfigError(
        f"{what}: another lrtool run (process {pid}) is writing into {folder}; two runs in one "
        "folder would replace each other's files. Wait for it to finish, or give another "
        f"folder. (If no lrtool run is there, process {pid} only reuses its number: delete "
        f"{folder / LOCK_NAME}.)"
    )


def _create_lock(lock: Path) -> bool:
    """Create `lock` holding this process's id, atomically: the file appears with its content
    (a hard link of a finished temporary file), so no run ever reads it empty. False when it
    exists already."""
    handle, tmp = tempfile.mkstemp(dir=lock.parent, prefix=".lrtool-lock.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(str(os.getpid()))
        try:
            os.link(tmp, lock)
        except FileExistsError:
            return False
        except OSError:  # no hard links here: O_EXCL, then the content
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(str(os.getpid()))
        return True
    finally:
        Path(tmp).unlink(missing_ok=True)


def _held_by_us(lock: Path) -> bool:
    try:
        return int(lock.read_text(encoding="utf-8").strip()) == os.getpid()
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def claimed(folder: str | Path | None, what: str = "--out") -> Iterator[Path | None]:
    """Hold `folder` for this run: create its lock file (of two runs exactly one gets it),
    remove it at the end. A lock whose process is gone (killed) is taken over. None claims
    nothing. `what` names the flag in messages."""
    if folder is None:
        yield None
        return
    folder = Path(folder)
    lock = folder / LOCK_NAME
    if _held_by_us(lock):
        yield folder  # already ours: the CLI holds the folder its workflow writes into
        return
    try:
        for _ in range(3):
            if _create_lock(lock):
                break
            pid = lock_holder(folder)
            if pid is not None:
                raise _held(folder, pid, what)
            lock.unlink()  # left by a run that was killed
        else:
            raise ConfigError(f"{what}: cannot claim {folder}: its lock file keeps reappearing.")
    except OSError as err:
        raise ConfigError(
            f"{what}: cannot claim {folder} for this run: {lock} cannot be created or replaced "
            f"({_why(err)}). Remove it if no lrtool run is writing there."
        ) from None
    try:
        yield folder
    finally:
        with contextlib.suppress(OSError):
            if lock.read_text(encoding="utf-8").strip() == str(os.getpid()):
                lock.unlink()  # only our own: never a lock another run took over


def new_run_folder(parent: str | Path, stem: str) -> Path:
    """Create parent/stem, or stem-2, stem-3, ... when another run took it first.

    `mkdir` without exist_ok is atomic: of two runs started in the same second, exactly one
    gets each name, so neither replaces the other's files.
    """
    parent = writable_folder(parent, "output_dir")
    for n in itertools.count(1):
        path = parent / (stem if n == 1 else f"{stem}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as err:
            raise ConfigError(f"output_dir: cannot create {path}: {_why(err)}.") from None
        return path
    raise AssertionError("unreachable")


def _finite(value: Any) -> Any:
    """JSON has no NaN or Infinity: write null instead, so every reader can parse the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def to_json(data: dict[str, Any]) -> str:
    return json.dumps(_finite(data), indent=2, allow_nan=False) + "\n"


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    return write_text_atomic(path, to_json(data))


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return write_text_atomic(path, buffer.getvalue())


def read_json(path: str | Path) -> dict[str, Any]:
    """A saved find/train/verify JSON file as it stands, with a clear error for anything else.

    Its fields are not checked here: `lrtool.results.read_json` reads through this and checks
    them, and is what every command should read a saved result with.
    """
    path = Path(path)
    if path.is_dir():
        kinds = "find.json, refind.json, train.json or verify.json"
        raise ConfigError(f"{path} is a folder; give one of the files in it ({kinds}).")
    if not path.exists():  # a pipe (`<(cat find.json)`) or a device is read as a file
        raise ConfigError(f"History file {path} does not exist.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    # ValueError: JSONDecodeError, UnicodeDecodeError, a number of over 4300 digits;
    # RecursionError: lists nested thousands deep.
    except (ValueError, RecursionError) as err:
        raise ConfigError(f"{path} is not valid JSON ({err}).") from None
    except OSError as err:  # unreadable: permissions, a broken disk
        raise ConfigError(f"cannot read {path}: {err.strerror or err}.") from None
    if not isinstance(data, dict) or ("history" not in data and data.get("kind") != "verify"):
        raise ConfigError(
            f"{path} is not an lrtool history (find.json, refind.json or train.json) nor a "
            "verify.json: it has no 'history' field."
        )
    return data


def history_kind(data: dict[str, Any]) -> str:
    """'find' (find and refind curves: loss against lr), 'train' (loss against step) or
    'verify' (a metric against candidate rates). The file's own "kind" says which; a file
    without one is told by its fields."""
    kind = data.get("kind")
    if kind in ("find", "refind"):
        return "find"
    if kind in ("train", "verify"):
        return kind
    if "epochs" in data:
        return "train"
    return "find"


def save_find(folder: str | Path, result: FindResult, exp: Any, stem: str = "find") -> Path:
    """Write `<stem>.json`, `<stem>.csv` and `config.yaml` into `folder`."""
    from .config import dump_yaml

    folder = Path(folder)
    write_json(folder / f"{stem}.json", result.to_dict())
    write_csv(folder / f"{stem}.csv", *result.csv_rows())
    write_text_atomic(folder / "config.yaml", dump_yaml(exp))
    return folder


def write_torch_atomic(path: str | Path, obj: Any) -> Path:
    """torch.save, atomically."""
    import torch

    return write_atomic(path, lambda handle: torch.save(obj, handle))


def save_train(folder: str | Path, result: Any, exp: Any, model: Any = None) -> Path:
    """Write train.json, train.csv, epochs.csv, config.yaml and model.pt into `folder`."""
    from .config import dump_yaml

    folder = Path(folder)
    write_json(folder / "train.json", result.to_dict())
    write_csv(folder / "train.csv", *result.csv_rows())
    write_csv(folder / "epochs.csv", *result.epoch_rows())
    write_text_atomic(folder / "config.yaml", dump_yaml(exp))
    if model is not None:
        write_torch_atomic(folder / "model.pt", model.state_dict())
    return folder
