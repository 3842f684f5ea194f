"""Errors the user can act on, and how the `sodakit` command line reports every error.

The contract of the command line (`sodakit.cli`):

- a problem with the user's input, config or machine is printed as **one line**,
  `sodakit CMD: error: <what, naming the file or key, and what was expected>`, exit code 2;
- anything else is a bug in sodakit: one line saying so, exit code 1;
- `sodakit --debug CMD ...` (or `SODAKIT_DEBUG=1`) prints the traceback as well, for either.

User errors are `UserError` (new code raises it or a subclass), `ValueError` (the convention of the
whole code base: every domain error, e.g. `ConfigError`, `CheckpointError`, `PackError`, subclasses
it) and `OSError` (missing files, permissions, a full disk), plus a missing optional package and an
out-of-memory error, which the user fixes by installing or by asking for less.
"""

from __future__ import annotations

import errno
import os

EXIT_BUG = 1
EXIT_USER = 2
EXIT_INTERRUPTED = 130

DEBUG_ENV = "SODAKIT_DEBUG"


class UserError(Exception):
    """Bad input, config or environment, explained by the message; the CLI prints it as one line."""

    exit_code = EXIT_USER


def debug_requested() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


_OS_HINTS = {
    errno.ENOSPC: "the disk is full: free some space or write somewhere else",
    errno.EDQUOT: "the disk quota is exhausted: free some space or write somewhere else",
    errno.EROFS: "read-only file system: write somewhere else",
    errno.EFBIG: "the file exceeds the size allowed here (ulimit -f or the file system's limit)",
}


def describe_os_error(e: OSError) -> str:
    """`<path>: <reason>` (both paths of a rename), with a hint for a full disk and its relatives."""
    if e.strerror is None:  # raised by our own code with a full message, e.g. "<path> does not exist"
        text = str(e) or type(e).__name__
    else:
        paths = [str(p) for p in (e.filename, e.filename2) if p is not None]
        text = f"{' -> '.join(paths)}: {e.strerror}" if paths else e.strerror
    hint = _OS_HINTS.get(e.errno) if e.errno is not None else None
    return f"{text} ({hint})" if hint else text


def classify(e: BaseException) -> tuple[int, str]:
    """(exit code, one-line message body) for an exception that reached the command line."""
    if isinstance(e, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted"
    if isinstance(e, UserError):
        return e.exit_code, _one_line(str(e))
    if isinstance(e, OSError):
        return EXIT_USER, _one_line(describe_os_error(e))
    if isinstance(e, ModuleNotFoundError) and e.name and not e.name.startswith("sodakit"):
        return EXIT_USER, f"the Python package {e.name!r} is needed here but not installed (pip install {e.name.split('.')[0]})"
    if isinstance(e, ValueError):
        return EXIT_USER, _one_line(str(e) or type(e).__name__)
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":
        return EXIT_USER, "out of memory: " + _one_line(str(e).split("\n")[0] or "allocation failed") + \
            " (use a smaller batch or model, or a device with more memory)"
    return EXIT_BUG, f"{type(e).__name__}: {_one_line(str(e))}"


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.strip().splitlines() if part.strip())


def report(prog: str, e: BaseException, debug: bool, stream) -> int:
    """Print the error the command-line way (see module docstring); returns the exit code."""
    import traceback

    code, message = classify(e)
    if debug:
        traceback.print_exception(e, file=stream)
    if code == EXIT_BUG:
        hint = "" if debug else f"; rerun as `sodakit --debug {prog.split()[-1]} ...` for the traceback"
        print(f"{prog}: internal error (a bug in sodakit, please report it): {message}{hint}", file=stream)
    elif code == EXIT_INTERRUPTED:
        print(f"{prog}: {message}", file=stream)
    else:
        print(f"{prog}: error: {message}", file=stream)
    stream.flush()
    return code
