"""argparse `type=` validators: bad numbers fail at parse time with a one-line usage error (exit 2).

Why: values such as NaN, -1 or 1e12 used to reach sockets, pools or loops and end in a traceback
(or a 30 s wait) instead of a message naming the option.
"""

from __future__ import annotations

import argparse
import math


def number(kind=float, lo=None, hi=None, lo_open=False):
    """A type converting to `kind` and requiring a finite value in [lo, hi] (lo excluded if lo_open)."""

    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a valid {kind.__name__}: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
        if lo is not None and (value <= lo if lo_open else value < lo):
            raise argparse.ArgumentTypeError(f"must be {'>' if lo_open else '>='} {lo}, got {text!r}")
        if hi is not None and value > hi:
            raise argparse.ArgumentTypeError(f"must be <= {hi}, got {text!r}")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in its message
    return convert


def endpoint(text: str) -> str:
    """A ZeroMQ endpoint 'tcp://HOST:PORT', 'ipc://PATH' or 'inproc://NAME'."""
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in ("tcp", "ipc", "inproc") or not rest:
        raise argparse.ArgumentTypeError(f"not a ZeroMQ endpoint (tcp://HOST:PORT, ipc://PATH): {text!r}")
    if scheme == "tcp":
        host, colon, port = rest.rpartition(":")
        if not colon or not host or not (port == "*" or (port.isdigit() and 0 < int(port) < 65536)):
            raise argparse.ArgumentTypeError(f"tcp endpoint needs HOST:PORT with port 1-65535: {text!r}")
    return text
