"""The `lrtool` console script and `python -m lrtool`.

Loading the CLI (typer, rich, numpy) takes most of a second, before any of lrtool's handlers
exist: a Ctrl-C then would print a traceback of import machinery. It ends the command as a
Ctrl-C does later, with exit code 130. Nothing here imports more than the standard library.
"""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130  # lrtool.errors.EXIT_INTERRUPTED, without importing it


def main() -> None:
    try:
        from .cli import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(EXIT_INTERRUPTED) from None
    cli_main()
