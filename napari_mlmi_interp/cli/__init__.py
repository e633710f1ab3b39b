"""``mlmi-interp``: the headless command line.

Every subcommand turns bad input into one line on stderr (``mlmi-interp: error: ...``)
and exit status 2; ``--debug`` shows the traceback instead. Warnings (what was corrected or
skipped while loading, what a careful user must know about a prediction or a map) are
``warning: ...`` lines on stderr; progress bars go to stderr when it is a terminal.

One module per command group, each registering its subcommands with ``add_parser(sub)``:
:mod:`.scans` (info, convert, sample), :mod:`.models` (models, predict, methods),
:mod:`.explain`, :mod:`.evaluate`, :mod:`.cohort` (batch, report), :mod:`.study` (ratings, study),
:mod:`.pacs` (pacs search, pacs store) and :mod:`.viewer` (view, demo); :mod:`._common` and
:mod:`._params` hold what they share.

Exit status: 0 done; 1 ``batch`` with failed cases; 2 a user error (one line); 70 an internal
error (``EX_SOFTWARE``: a bug in this package, to report); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from .. import __version__
from ..errors import MlmiError
from ..io import LoadWarning
from . import cohort, evaluate, explain, models, pacs, scans, study, viewer
from ._common import CliError

__all__ = ["EXIT_INTERNAL_ERROR", "EXIT_INTERRUPTED", "EXIT_USER_ERROR", "CliError", "build_parser", "main"]

EXIT_USER_ERROR = 2  # as argparse's own usage errors
EXIT_INTERNAL_ERROR = 70  # EX_SOFTWARE (sysexits.h): an internal software error
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C

# in the order `mlmi-interp --help` lists the commands
_GROUPS = (scans, models, explain, evaluate, cohort, study, pacs, viewer)


def build_parser() -> argparse.ArgumentParser:
    """The ``mlmi-interp`` parser: global options, then each command group's subcommands."""
    parser = argparse.ArgumentParser(
        prog="mlmi-interp",
        description="Interpretability for medical-imaging ML: scans in physical space, in napari.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in _GROUPS:
        group.add_parser(sub)
    return parser


def _quiet_broken_pipe() -> int:
    """The reader of stdout went away (``mlmi-interp methods | head -1``): end quietly.

    As the Python docs advise, stdout is pointed at devnull so that the interpreter's
    final flush does not fail again.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is no file (captured): nothing left to flush
        pass
    return 0


def _run(args: argparse.Namespace) -> int:
    """The chosen command, without the warnings a CLI user need not see twice."""
    with warnings.catch_warnings():
        # volume.warnings already carry these; do not print them twice
        warnings.simplefilter("ignore", LoadWarning)
        # Captum's note that it switched gradients on for the input: noise to a CLI user
        warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside main's handler
        return code


def _internal_error(exc: Exception) -> int:
    """Two lines on stderr for a bug: what it was, and how to get the traceback to report it."""
    print(f"mlmi-interp: internal error, please report: {type(exc).__name__}: {exc}", file=sys.stderr)
    print(
        "mlmi-interp: rerun with --debug for the traceback, and report it with the command "
        "on the project's issue tracker",
        file=sys.stderr,
    )
    return EXIT_INTERNAL_ERROR


def main(argv: list[str] | None = None) -> int:
    """Run ``mlmi-interp`` with ``argv`` (default ``sys.argv[1:]``); return the exit status.

    Only an error the user can act on becomes the one line ``mlmi-interp: error: <message>``
    (exit status 2): an :class:`~napari_mlmi_interp.errors.MlmiError`, or an ``OSError`` —
    a problem of the environment or of a file (permission denied, disk full, a missing
    folder), whose message names the file. Any other exception is a bug in this package:
    without ``--debug`` it is said as "internal error, please report" with its type and
    message and a hint to rerun with ``--debug`` (exit status 70, ``EX_SOFTWARE``); with
    ``--debug`` it, like a user error, propagates with its full traceback. Ctrl-C ends with
    exit status 130; a reader of stdout that goes away (``| head``) ends quietly with 0.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except (MlmiError, OSError) as exc:
        if args.debug:
            raise
        print(f"mlmi-interp: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:  # pragma: no cover
        return EXIT_INTERRUPTED
    except Exception as exc:
        if args.debug:
            raise
        return _internal_error(exc)
