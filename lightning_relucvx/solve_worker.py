"""A persistent solver process: ``python -m lightning_relucvx.solve_worker [NICE]``.

It reads length-prefixed requests ``(problem, options, warm_start)`` from stdin and writes
``("ok", report)`` or ``("error", exception)`` to stdout. The frames are pickles exchanged
only between a training process and the child it started itself (never network bytes).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
from typing import BinaryIO


def read_frame(stream: BinaryIO) -> bytes | None:
    header = stream.read(8)
    if len(header) < 8:
        return None
    size = int.from_bytes(header, "little")
    body = stream.read(size)
    if len(body) < size:
        return None
    return body


def write_frame(stream: BinaryIO, data: bytes) -> None:
    stream.write(len(data).to_bytes(8, "little"))
    stream.write(data)
    stream.flush()


def main() -> None:
    nice = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    with contextlib.suppress(OSError):
        os.nice(nice)
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # stray prints must not corrupt the frames
    from .core import solve

    while (frame := read_frame(inp)) is not None:
        problem, options, warm_start = pickle.loads(frame)
        try:
            result: tuple = ("ok", solve(problem, options, warm_start=warm_start))
        except Exception as exc:  # handed to the caller, which raises it
            result = ("error", exc)
        try:
            data = pickle.dumps(result)
        except Exception as exc:  # an exception that cannot be pickled
            data = pickle.dumps(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
        write_frame(out, data)


if __name__ == "__main__":
    main()
