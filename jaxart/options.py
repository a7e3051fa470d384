"""Config fields that declare their own help and value parser, and the parsers themselves.

Each job's frozen config dataclass declares every option once with `option`; the commands
(`jaxart.cli.add_config_arguments`) turn the fields into flags, so a flag maps onto a field one
to one and `--help` shows the config's defaults. The parsers check a value against the range the
code can hold (computations run in float32) and raise `argparse.ArgumentTypeError`, which is
what argparse reports in one line.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

FLOAT32_MAX = 3.4028234663852886e38
# Every count, size and seed lands in an int32 somewhere (JAX's default integer type).
INT32_MAX = 2**31 - 1


def option(
    default: Any, help: str, parse: Callable[[str], Any], show: Callable[[Any], str] | None = None, **metadata: Any
) -> Any:
    """A config dataclass field that carries its command-line help and value parser; `show`
    writes a default as command-line text where `str` (or commas between a tuple's items) would not."""
    return dataclasses.field(default=default, metadata={"help": help, "parse": parse, "show": show, **metadata})


def _integer(text: str, least: int, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
    if value > INT32_MAX:
        raise argparse.ArgumentTypeError(f"{value} is too large (the most an int32 holds is {INT32_MAX})")
    return value


def positive_int(text: str) -> int:
    """An integer > 0."""
    return _integer(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    return _integer(text, 0, "an integer >= 0")


def integer_in(allowed: tuple[int, ...]) -> Callable[[str], int]:
    """A parser of one of a few integers (e.g. a bit depth: 8 or 16), whose refusal names them."""
    words = [str(value) for value in allowed]
    expected = f"{', '.join(words[:-1])} or {words[-1]}" if len(words) > 1 else words[0]

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value not in allowed:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    return parse


def text(text: str) -> str:
    """Any string value (a file or folder name, a source's name, an address): not empty (as a
    path, which would mean the current folder), and without the NUL byte no system allows in a
    name. `jaxart.cli.ArgumentParser` parses every flag that declares no type with it."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a name, got an empty one")
    if "\0" in text:
        raise argparse.ArgumentTypeError(f"{text!r} holds a NUL byte, which no file name can")
    return text


def non_negative_float(text: str) -> float:
    """A finite float >= 0 that float32 can hold."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    if value > FLOAT32_MAX:
        raise argparse.ArgumentTypeError(f"{text} does not fit float32 (largest {FLOAT32_MAX:.4g})")
    return value


def positive_float(text: str) -> float:
    """A finite float > 0 that float32 can hold."""
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def unit_interval(text: str) -> float:
    """A number in [0, 1) (a decay or momentum)."""
    value = non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text}")
    return value


def fraction(text: str) -> float:
    """A number in [0, 1] (a share, a strength)."""
    value = non_negative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text}")
    return value


def values(parse: Callable[[str], Any]) -> Callable[[str], tuple[Any, ...]]:
    """A parser of comma-separated values, each parsed by `parse`: one value, or one per run of a
    sweep (e.g. '1e-4,2e-4')."""

    def parse_all(text: str) -> tuple[Any, ...]:
        parts = [part.strip() for part in text.split(",") if part.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(f"expected one or more comma-separated values, got {text!r}")
        return tuple(parse(part) for part in parts)

    return parse_all
