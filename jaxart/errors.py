"""The errors jaxart reports to a person in one line, and how a cause becomes that line.

Library code raises these; `jaxart.cli.run` turns them into one stderr line and an exit
status (set `JAXART_DEBUG=1` to see the whole chained traceback as well). Raise them
`from` the underlying exception so that debug mode can show it.

The library speaks in its own terms: a message names an option by its config field in
backticks (`option("batch_size")` gives "`batch_size`"), which a Python caller knows as a
keyword; a command shows it as its flag ("--batch-size", see `jaxart.cli.in_flags`).
"""

from __future__ import annotations

import os
import re

MAX_REASON = 200


def option(name: str) -> str:
    """How a message names a config field: `name` in backticks."""
    return f"`{name}`"


class InputError(Exception):
    """A problem with what the user gave us (a file, a number, a folder): exit status 2."""


class ConfigError(InputError, ValueError):
    """A value the library cannot work with (an option out of range, arrays of the wrong shape,
    options that exclude each other): a ValueError to a Python caller, an InputError (exit
    status 2) to a command, with no wrapping in between."""


class RunError(Exception):
    """A run that could not go on through no fault of its input (a full disk, divergence,
    a workdir in use by another run): exit status 1, saying what was kept."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a run that kept its work: the message says where (exit
    status 130, as for any interruption)."""


def reason(e: BaseException) -> str:
    """One line describing `e`: its message's first line (cut to MAX_REASON characters),
    or its type's name when it has no message."""
    text = str(e).strip()
    first = text.splitlines()[0] if text else type(e).__name__
    return first if len(first) <= MAX_REASON else first[: MAX_REASON - 3] + "..."


def os_error(e: BaseException) -> OSError | None:
    """The file system's error ("No space left on device") behind an exception of orbax or
    tensorstore, which wrap it in their own types (tensorstore only as `os_error_code='28'` in
    its message); None when the cause was not the file system."""
    cause: BaseException | None = e
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno:
            return cause
        code = re.search(r"os_error_code='(\d+)'", str(cause))
        if code:
            return OSError(int(code.group(1)), os.strerror(int(code.group(1))))
        cause = cause.__cause__ or cause.__context__
    return None
