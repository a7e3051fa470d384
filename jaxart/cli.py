"""Shared command-line conventions: one clear line on stderr, exit status 2 for bad input
and 1 for a run that could not finish; flags declared once on the config dataclasses."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import errno
import gc
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

from jaxart import interrupts, options
from jaxart.errors import InputError, RunError, os_error, reason
from jaxart.options import non_negative_int, positive_int

DEBUG_ENV = "JAXART_DEBUG"


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none to show."""

    def _get_help_string(self, action):
        if action.default is None or action.default == "":
            return action.help
        if action.default is False:
            return f"{action.help} (default: off)"
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is a single line (argparse prints usage + error),
    and --help shows the defaults."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        super().__init__(*args, **kwargs)
        # What a flag without a type parses with (argparse's own: the string as given).
        self.register("type", None, options.text)

    def _get_value(self, action, arg_string):
        # A subcommand's arguments are passed on as they are, to be parsed by its own parser.
        if isinstance(action, argparse._SubParsersAction):
            return arg_string
        return super()._get_value(action, arg_string)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def parse_known_args(self, args=None, namespace=None):
        parsed, extras = super().parse_known_args(args, namespace)
        # A subcommand's parser finishes first, the top one last: the command's flags are the
        # top parser's with those of the subcommand chosen.
        _COMMAND_FLAGS.clear()
        _COMMAND_FLAGS.update(_flags_by_dest(self, parsed))
        return parsed, extras


# The flag of each destination of the command being run (`ArgumentParser.parse_known_args`):
# how `in_flags` shows a field that the command takes under another flag (`source` is
# python -m jaxart.weights' --from).
_COMMAND_FLAGS: dict[str, str] = {}
# Library keywords that a command takes under another destination: `jaxart.weights`' `source`
# is the style command's --weights.
_SYNONYMS = {"source": "weights"}


def _flags_by_dest(parser: argparse.ArgumentParser, namespace: argparse.Namespace) -> dict[str, str]:
    """{destination: its first long flag} of `parser` and of the subcommand `namespace` chose."""
    flags: dict[str, str] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(namespace, action.dest, ""))
            if chosen is not None:
                flags.update(_flags_by_dest(chosen, namespace))
            continue
        long = [s for s in action.option_strings if s.startswith("--")]
        if long:
            flags.setdefault(action.dest, long[0])
    return flags


def prepare_backend(own_convolutions: bool = False) -> None:
    """What every command sets before JAX compiles anything: XLA's flags
    (`jaxart.backend.set_xla_flags`, `own_convolutions` passed on), the persistent compilation cache (see
    `jaxart.cache.enable_compile_cache`) and, for forced CPU devices, threads enough for their
    collectives (`jaxart.distributed.cpu_threads_env`).
    Process-wide, so commands call it; library functions never do."""
    from jaxart import backend, distributed
    from jaxart.cache import enable_compile_cache

    backend.set_xla_flags(own_convolutions)
    os.environ.update(distributed.cpu_threads_env(os.environ))
    enable_compile_cache()


def keep_freed_memory() -> None:
    """Asks glibc's malloc to keep freed memory for reuse (one arena, no mmap, no trimming below
    1 GiB), where the C library is glibc; elsewhere nothing.

    XLA's CPU runtime allocates every call's buffers afresh; by default glibc serves large blocks
    with mmap and returns them on free, so each call faults its pages in again: ~80,000 page
    faults (~330 MB) per 512 px call of a feed-forward network, a third of its time. Set before
    the backend starts its threads, so they share the one arena. Process-wide: commands call it.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_max, m_arena_max = -1, -4, -8  # malloc.h
    libc.mallopt(m_arena_max, 1)
    libc.mallopt(m_mmap_max, 0)
    libc.mallopt(m_trim_threshold, 1 << 30)


def add_process_arguments(group: argparse._ArgumentGroup) -> None:
    """The flags of a multi-process run (see `jaxart.distributed.initialize`), the same for both jobs."""
    group.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0, where all processes meet")
    group.add_argument("--num-processes", type=positive_int, help="how many processes take part")
    group.add_argument("--process-id", type=non_negative_int, help="this process's index, from 0")
    group.add_argument(
        "--distributed",
        action="store_true",
        help="let jax.distributed find the processes itself (SLURM, Cloud TPU, Open MPI); "
        "without it or --coordinator, a command is one process",
    )


def join_processes(args: argparse.Namespace) -> None:
    """Joins the multi-process run the flags of `add_process_arguments` describe, if any."""
    from jaxart.distributed import initialize

    initialize(args.coordinator, args.num_processes, args.process_id, args.distributed)


def debug() -> bool:
    """Whether `JAXART_DEBUG` asks for full tracebacks."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


_FIELD = re.compile(r"`([a-z][a-z0-9_]*)`")


def _command_flag(field: str) -> str:
    for name in (field, _SYNONYMS.get(field, field)):
        if name in _COMMAND_FLAGS:
            return _COMMAND_FLAGS[name]
    return flag(field)


def in_flags(message: str) -> str:
    """A library message in the command line's terms: each `field` named as the running command's
    flag for it (its destination's, or a synonym's; see `ArgumentParser`), else as --field."""
    return _FIELD.sub(lambda m: _command_flag(m.group(1)), message)


def _report(e: BaseException, line: str, status: int) -> int:
    if debug():
        traceback.print_exception(e)
    # One line, whatever a library's message held.
    interrupts.write_line(" ".join(in_flags(line).split("\n")))
    return status


def _drop_abandoned_reads(original: Callable) -> Callable:
    """An unraisable hook that drops what the reads orbax abandons after a failed restore of a
    damaged checkpoint report as they are finalized (their own error, or "Event loop is
    closed" from tensorstore's callbacks, some only after the command's error reached it),
    and passes everything else to `original`."""

    def hook(unraisable) -> None:
        error = unraisable.exc_value
        closed_loop = isinstance(error, RuntimeError) and "Event loop is closed" in str(error)
        code = getattr(unraisable.object, "cr_code", None)
        if not (closed_loop or (code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename)):
            original(unraisable)

    return hook


@contextlib.contextmanager
def _quiet_library_reports() -> Iterator[None]:
    """While a command runs, keeps off stderr what orbax and tensorstore report beside the one
    error the command reports itself (all of it shows with JAXART_DEBUG=1): the tracebacks that
    orbax's background save threads log for a failure, several times over (a full disk printed
    ~960 lines), and the reports of abandoned reads (see `_drop_abandoned_reads`).

    Both are process-wide, so only the command sets them, for its own duration.
    """
    if debug():
        yield
        return
    absl = logging.getLogger("absl")
    level, original = absl.level, sys.unraisablehook
    absl.setLevel(logging.CRITICAL)
    # orbax's failed background writes are asyncio tasks whose "exception was never retrieved"
    # is logged when they are collected, which can be at interpreter exit, after this returns:
    # the command's process ends with the command, so that logger stays quiet to the end.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    sys.unraisablehook = _drop_abandoned_reads(original)
    try:
        yield
    finally:
        gc.collect()  # abandoned reads are reported when collected: while the hook is still set
        sys.unraisablehook = original
        absl.setLevel(level)


def run(
    main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None, command: bool = False
) -> int:
    """Runs `main(argv)` as a command, and always ends in one stderr line when it fails:
    `InputError` exits with status 2; `RunError`, a file system that refuses a write (full,
    read-only) or memory that runs out, status 1; Ctrl-C or SIGTERM status 130 (see
    `jaxart.interrupts`; `command`: this process is the command's own). Anything else is a
    bug of jaxart's, reported in one line as well, status 1. `JAXART_DEBUG=1` prints the
    chained traceback first."""
    try:
        with interrupts.handling(command), _quiet_library_reports():
            try:
                return main(argv) or 0
            finally:
                interrupts.close()
                if command and not debug():
                    interrupts.silence_libraries()
    except InputError as e:
        return _report(e, f"error: {e}", 2)
    except RunError as e:
        return _report(e, f"error: {e}", 1)
    except KeyboardInterrupt as e:
        return _report(e, f"interrupted: {e}" if str(e) else "interrupted", interrupts.INTERRUPTED)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
            return _report(e, _could_not_write(e), 1)
        where = f" {e.filename!r}" if e.filename else ""
        return _report(e, f"error:{where} {e.strerror or reason(e)}", 2)
    except MemoryError as e:
        return _report(e, _OUT_OF_MEMORY, 1)
    except Exception as e:
        cause = os_error(e)  # a file system's refusal inside a library's own error type
        if cause is not None:
            return _report(e, _could_not_write(cause), 1)
        if "RESOURCE_EXHAUSTED" in str(e):  # XLA's allocator, through jaxlib's own error type
            return _report(e, _OUT_OF_MEMORY, 1)
        return _report(
            e, f"error: jaxart failed ({type(e).__name__}: {reason(e)}); {DEBUG_ENV}=1 shows where; please report it", 1
        )


def _could_not_write(e: OSError) -> str:
    where = f" {e.filename!r}" if e.filename else ""
    return f"error: could not write{where}: {e.strerror or reason(e)}"


_OUT_OF_MEMORY = "error: out of memory; try a smaller --max-size, batch or --num"


def main(command: Callable[[Sequence[str] | None], int | None]) -> NoReturn:
    """A module's `__main__`: runs `command` on sys.argv (see `run`) and ends the process with its
    status, within `jaxart.interrupts.DEADLINE` even if a library's thread would hold the exit."""
    interrupts.exit(run(command, command=True))


def flag(name: str) -> str:
    """Field name -> command-line flag ('latent_dim' -> '--latent-dim')."""
    return "--" + name.replace("_", "-")


def add_config_arguments(
    parser: argparse._ActionsContainer, config_cls: type, choices: dict[str, Any] | None = None
) -> None:
    """Adds one flag per field of `config_cls` (declared with `option`), defaulting to its default."""
    choices = choices or {}
    for field in dataclasses.fields(config_cls):
        if isinstance(field.default, bool):
            parser.add_argument(
                flag(field.name),
                dest=field.name,
                default=field.default,
                action=argparse.BooleanOptionalAction,
                help=field.metadata["help"],
            )
            continue
        # A string default goes through `type` like a typed value, so tuples show as typed.
        show = field.metadata.get("show")
        if show is not None:
            default = show(field.default)
        elif isinstance(field.default, tuple):
            default = ",".join(map(str, field.default))
        else:
            default = field.default
        parser.add_argument(
            flag(field.name),
            dest=field.name,
            default=default,
            type=field.metadata["parse"],
            nargs=field.metadata.get("nargs"),
            help=field.metadata["help"],
            choices=choices.get(field.name),
            metavar=None if field.name in choices else field.name.upper(),
        )


def config_from_args(config_cls: type, args: argparse.Namespace) -> Any:
    """The `config_cls` named by parsed arguments (its checks raise `ConfigError`, an InputError)."""
    return config_cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)})
