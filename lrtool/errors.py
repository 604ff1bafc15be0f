"""The errors lrtool raises, and the exit code each one means.

Library code raises these with a message that says what was expected, what arrived and what
to do; only the CLI turns them into a red paragraph and an exit code.
"""

from __future__ import annotations

# Exit codes, the same for every command (README "Exit codes").
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NO_SUGGESTION = 3
EXIT_INTERRUPTED = 130


class LrtoolError(Exception):
    """Base class: a problem the user can fix, reported without a traceback."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(LrtoolError):
    """The experiment file, an override or a flag is not valid."""


class ComponentError(LrtoolError):
    """A model, dataset, optimizer or loss could not be built from its spec."""


class DeviceError(LrtoolError):
    """The requested device is not available on this machine."""


class RunFailed(LrtoolError):
    """The run itself failed: a NaN loss, a failed smoke check."""

    exit_code = EXIT_FAILED


class NoSuggestion(LrtoolError):
    """`--strict` was given and no sensible learning rate could be suggested."""

    exit_code = EXIT_NO_SUGGESTION
