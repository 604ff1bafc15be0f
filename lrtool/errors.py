"""The errors lrtool raises, and the exit code each one means.

Library code raises these with a message that says what was expected, what arrived and what
to do; only the CLI turns them into a red paragraph and an exit code.
"""

from __future__ import annotations

import os
import re
import sysconfig
import traceback
from collections.abc import Sequence
from traceback import FrameSummary

# Exit codes, the same for every command (README "Exit codes").
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NO_SUGGESTION = 3
EXIT_INTERRUPTED = 130


class LrtoolError(Exception):
    """Base class: a problem the user can fix, reported without a traceback."""

    exit_code = EXIT_BAD_INPUT
    # Shown under the paragraph when there is more to see (the user's frames).
    details = ""


class ConfigError(LrtoolError):
    """The experiment file, an override or a flag is not valid."""


class ComponentError(LrtoolError):
    """A model, dataset, optimizer or loss could not be built from its spec."""


class LossCannotTrain(ComponentError):
    """The first batch's loss, before any step, is not finite or has no gradient: the data,
    the model or the loss is to blame, not a rate (`--smoke` reports it as a failed check)."""


class DeviceError(LrtoolError):
    """The requested device is not available on this machine."""


class RunFailed(LrtoolError):
    """The run itself failed: a NaN loss, a failed smoke check."""

    exit_code = EXIT_FAILED


class NoSuggestion(LrtoolError):
    """`--strict` was given and no sensible learning rate could be suggested."""

    exit_code = EXIT_NO_SUGGESTION


# --- failures in code lrtool does not own -------------------------------------------------
#
# A model, dataset or loss given as 'package.module:callable' runs the user's own code. When
# it raises, the user needs to know which component failed and the lines of *their* files it
# went through, not typer's, torch's or lrtool's; `--debug` still shows everything.

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# Python's own modules and installed packages (site-packages lies under the stdlib folder on
# most installs, but not in every virtual environment, hence both).
LIBRARY_DIRS = tuple(
    sorted(
        {
            os.path.abspath(sysconfig.get_paths()[key])
            for key in ("stdlib", "platstdlib", "purelib", "platlib")
        }
    )
)

# The lrtool function that called the user's code says which component it belongs to:
# (module, function), "*" for every function of the module.
_COMPONENT_OF_CALLER: dict[tuple[str, str], str] = {
    ("models", "*"): "model",
    ("data", "*"): "data",
    ("registry", "build_loss"): "loss",
    ("registry", "optimizer_class"): "optimizer",
    ("build", "make_optimizer"): "optimizer",
    ("probe", "probe_data"): "data",
    ("probe", "probe_model"): "model",
    ("probe", "probe_loss"): "loss",
}
# Frames of these lrtool functions mean the experiment was still being built: bad input.
_BUILDING = {
    ("build", "build"),
    ("models", "build_model"),
    ("data", "load_splits"),
    ("registry", "build_loss"),
    ("build", "make_optimizer"),
}
# What a Dataset's own methods are called; a model's code runs under `forward`.
_DATA_METHODS = {"__getitem__", "__getitems__", "__len__", "__iter__", "__next__"}
# The YAML key that names each component, so the user knows where to look.
SPEC_KEYS = {
    "model": "model.name",
    "data": "data.name",
    "loss": "loss.name",
    "optimizer": "optimizer.name",
}


def lrtool_module(filename: str, package_dir: str = PACKAGE_DIR) -> str | None:
    """'models' for .../lrtool/models.py; None for a file outside the lrtool package."""
    path = os.path.abspath(filename)
    if os.path.commonpath([path, package_dir]) != package_dir:
        return None
    return os.path.splitext(os.path.relpath(path, package_dir))[0].replace(os.sep, ".")


def is_user_file(
    filename: str,
    package_dir: str = PACKAGE_DIR,
    library_dirs: Sequence[str] = LIBRARY_DIRS,
) -> bool:
    """A file of the user's own: not lrtool's, not an installed package's, not Python's."""
    if filename.startswith("<"):  # <frozen importlib._bootstrap>, <string>: no file to show
        return False
    path = os.path.abspath(filename)
    parts = path.split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts:
        return False
    return not any(
        os.path.commonpath([path, folder]) == folder for folder in (package_dir, *library_dirs)
    )


def user_frames(
    frames: Sequence[FrameSummary],
    package_dir: str = PACKAGE_DIR,
    library_dirs: Sequence[str] = LIBRARY_DIRS,
) -> list[FrameSummary]:
    """The frames of `traceback.extract_tb(...)` that stand in the user's own files."""
    return [f for f in frames if is_user_file(f.filename, package_dir, library_dirs)]


def failed_component(frames: Sequence[FrameSummary], package_dir: str = PACKAGE_DIR) -> str | None:
    """'model', 'data', 'loss' or 'optimizer': whose code raised, judged from a traceback.

    1) The innermost lrtool function that maps to a component (build_model, load_splits,
    build_loss, the probe's steps) decides. 2) Otherwise (the training loop calls model and
    loss on one line), the first user frame that lrtool or a library called does: `forward`
    is a model's, `__getitem__` a dataset's; a function called where lrtool calls `loss_fn`
    is the loss.
    """
    for frame in reversed(frames):
        module = lrtool_module(frame.filename, package_dir)
        if module is None:
            continue
        for key in ((module, frame.name), (module, "*")):
            if key in _COMPONENT_OF_CALLER:
                return _COMPONENT_OF_CALLER[key]
    caller: FrameSummary | None = None
    called = False  # a frame of lrtool's or a library's came before: user code it called
    for frame in frames:
        if lrtool_module(frame.filename, package_dir) is not None:
            caller, called = frame, True
        elif not is_user_file(frame.filename, package_dir):
            called = True
        elif called:
            if frame.name == "forward":
                return "model"
            if frame.name in _DATA_METHODS:
                return "data"
            if caller is not None and "loss" in (caller.line or ""):
                return "loss"
            return None
    return None


def while_building(frames: Sequence[FrameSummary], package_dir: str = PACKAGE_DIR) -> bool:
    """Did it fail while lrtool was building the experiment's components (not running them)?"""
    return any((lrtool_module(f.filename, package_dir), f.name) in _BUILDING for f in frames)


def _short_path(filename: str, library_dirs: Sequence[str] = LIBRARY_DIRS) -> str:
    """A library file relative to site-packages (torch/nn/functional.py); others as given."""
    path = os.path.abspath(filename)
    for marker in ("site-packages", "dist-packages"):
        _, sep, tail = path.partition(os.sep + marker + os.sep)
        if sep:
            return tail
    for folder in library_dirs:
        if os.path.commonpath([path, folder]) == folder:
            return os.path.relpath(path, folder)
    return filename


def format_frames(frames: Sequence[FrameSummary]) -> str:
    """`file:line in function` and the source line under it, one frame after the other."""
    lines = []
    for f in frames:
        lines.append(f"  {f.filename}:{f.lineno} in {f.name}")
        if f.line:
            lines.append(f"    {f.line.strip()}")
    return "\n".join(lines)


# torch re-raises an exception from a DataLoader worker process in the main process, with the
# worker's traceback only as text in the message: "Caught ValueError in DataLoader worker
# process 0.\nOriginal Traceback (most recent call last):\n  File ...". Those frames are the
# ones that say where the user's dataset failed.
_WORKER_ERROR = re.compile(
    r"Caught \w+ in DataLoader worker process (\d+)\.\s*\n"
    r"Original Traceback \(most recent call last\):\n(.*)",
    re.S,
)
_TEXT_FRAME = re.compile(r'^  File "(?P<file>.+)", line (?P<line>\d+), in (?P<name>.+)$')


def worker_traceback(text: str) -> tuple[list[FrameSummary], str, int] | None:
    """(frames, the original message, worker number) from a worker error's text, else None."""
    match = _WORKER_ERROR.search(text)
    if match is None:
        return None
    lines = match[2].splitlines()
    frames: list[FrameSummary] = []
    i = end = 0
    while i < len(lines):
        found = _TEXT_FRAME.match(lines[i])
        i += 1
        if found is None:
            continue
        source = None
        if i < len(lines) and lines[i].startswith("    "):
            source, i = lines[i].strip(), i + 1
        # Python 3.11+ underlines the failing expression with ^ and ~ on the next line.
        while i < len(lines) and lines[i].startswith("    ") and not lines[i].strip(" ^~"):
            i += 1
        frames.append(
            FrameSummary(
                found["file"], int(found["line"]), found["name"], lookup_line=False, line=source
            )
        )
        end = i
    return frames, "\n".join(lines[end:]).strip(), int(match[1])


class UserCodeError(LrtoolError):
    """Code lrtool calls but does not own raised: the user's model, data or loss, or a library.

    The message says which component failed, while building (exit 2, like any bad input) or
    during the run (exit 1), and where; `details` lists the frames from the user's files.
    """

    def __init__(self, message: str, *, details: str, headline: str, exit_code: int) -> None:
        super().__init__(message)
        self.details = details
        self.headline = headline
        self.exit_code = exit_code

    @classmethod
    def from_exception(cls, err: BaseException) -> UserCodeError:
        """Describe an exception that escaped from code lrtool called."""
        frames = traceback.extract_tb(err.__traceback__)
        kind, text = type(err).__name__, str(err)
        worker = worker_traceback(text)
        if worker is not None:
            inner, original, number = worker
            frames = [*frames, *inner]  # the worker ran inside the main process's loop
            original = original.removeprefix(f"{kind}:").strip() or original
            text = f"{original} (in DataLoader worker process {number})"
        return cls.from_frames(frames, kind, text)

    @classmethod
    def from_frames(
        cls,
        frames: Sequence[FrameSummary],
        kind: str,
        text: str,
        *,
        package_dir: str = PACKAGE_DIR,
        library_dirs: Sequence[str] = LIBRARY_DIRS,
    ) -> UserCodeError:
        """Describe an exception of type `kind` and message `text` raised through `frames`."""
        yours = user_frames(frames, package_dir, library_dirs)
        component = failed_component(frames, package_dir)
        building = while_building(frames, package_dir)
        text = text.strip().rstrip(".")
        raised = f"{kind}: {text}" if text else kind
        # Where: the innermost of the user's frames, else the innermost frame of all.
        at = yours[-1] if yours else (frames[-1] if frames else None)
        if yours:
            who = "your code"
        elif at is not None and lrtool_module(at.filename, package_dir) is not None:
            who = "lrtool"
        elif at is not None:
            who = _short_path(at.filename, library_dirs).split(os.sep)[0].removesuffix(".py")
        else:
            who = "Python"
        where = short = ""
        if at is not None:
            shown = at.filename if yours else _short_path(at.filename, library_dirs)
            where = f" (at {shown}:{at.lineno}, in {at.name})"
            short = f" ({os.path.basename(at.filename)}:{at.lineno})"
        if component is not None:
            subject = f"the {component} ({SPEC_KEYS.get(component, component)})"
            what = (
                f"{subject} could not be built" if building else f"{subject} failed during the run"
            )
        else:
            what = "the experiment could not be built" if building else "the run failed"
        message = f"{what}: {who} raised {raised}{where}."
        if yours:
            message += " The frames in your files, innermost last:"
            details = format_frames(yours) + "\n(--debug shows the full traceback.)"
        else:
            message += " --debug shows the full traceback."
            if who == "lrtool":
                message += " If the experiment is not the cause, please report it."
            details = ""
        first_line = raised.splitlines()[0]
        return cls(
            message,
            details=details,
            headline=f"{component or who} raised {first_line}{short}",
            exit_code=EXIT_BAD_INPUT if building else EXIT_FAILED,
        )


def listed(names: Sequence[str], limit: int = 10) -> str:
    """`names` joined by commas, the first `limit` of them and "and N more" after."""
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
