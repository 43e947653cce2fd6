"""Solver worker processes: each solve runs in a child process, so that a crash, a timeout
or a memory blow-up takes down that child only. The server keeps a fixed number of them,
replaces any that die, and kills one that overruns its hard deadline.

Parent and child exchange msgpack bytes over a pipe (never pickle): the child gets a
canonical binary request (:func:`lightning_relucvx.wire.encode_request`) and answers
``{"ok": true, "result": <binary result>}`` or ``{"ok": false, "kind", "message"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgpack

_CTX = mp.get_context("spawn")
READY_TIMEOUT = 120.0


class QueueFull(Exception):
    """All workers are busy and the waiting line is full."""


class WorkerTimeout(Exception):
    """The solve ran past its hard deadline; its worker was killed."""


class WorkerCrashed(Exception):
    """The worker process died while solving."""


def _worker_main(conn, memory_mb: int) -> None:  # runs in the child process
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    if memory_mb > 0:
        import resource

        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from lightning_relucvx import wire
    from lightning_relucvx.core import solve

    conn.send_bytes(msgpack.packb({"ready": True, "pid": os.getpid()}))
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            problem, options, warm = wire.decode_request(data, wire.MSGPACK)
            report = solve(problem, options, warm_start=warm)
            reply = {"ok": True, "result": wire.encode_result(report, binary=True)}
        except MemoryError:
            reply = {
                "ok": False,
                "kind": "memory",
                "message": f"the solve ran out of memory (worker limit {memory_mb} MiB)",
            }
        except ValueError as exc:
            reply = {"ok": False, "kind": "invalid", "message": str(exc)}
        except Exception as exc:
            reply = {"ok": False, "kind": "error", "message": f"{type(exc).__name__}: {exc}"}
        try:
            conn.send_bytes(msgpack.packb(reply, use_bin_type=True))
        except (BrokenPipeError, OSError):
            return


class WorkerSlot:
    """One worker process and its pipe; used by one solve at a time."""

    def __init__(self, memory_mb: int = 0) -> None:
        self.memory_mb = memory_mb
        self.proc: Any = None
        self.conn: Any = None
        self.ready = False
        self.restarts = -1
        self._lock = threading.Lock()
        self.start()

    def start(self) -> None:
        parent, child = _CTX.Pipe()
        proc = _CTX.Process(
            target=_worker_main, args=(child, self.memory_mb), daemon=True, name="relucvx-worker"
        )
        proc.start()
        child.close()
        self.proc, self.conn, self.ready = proc, parent, False
        self.restarts += 1

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.is_alive()

    def _wait_ready(self) -> None:
        if self.ready:
            return
        if not self.conn.poll(READY_TIMEOUT):
            self.kill()
            raise WorkerCrashed("the worker did not start")
        try:
            msgpack.unpackb(self.conn.recv_bytes())
        except (EOFError, OSError) as exc:
            code = self.proc.exitcode
            self.restart()
            raise WorkerCrashed(f"the worker exited while starting (exit code {code})") from exc
        self.ready = True

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.join(5)
        with contextlib.suppress(Exception):
            self.conn.close()

    def restart(self) -> None:
        self.kill()
        self.start()

    def interrupt(self) -> None:
        """Stop the solve in progress: kill the process (its caller sees a crash and
        restarts it)."""
        with contextlib.suppress(Exception):
            self.proc.kill()

    def call(self, payload: bytes, hard_timeout: float) -> dict[str, Any]:
        """Send one request and wait for its answer (blocking; run it on a thread)."""
        with self._lock:
            if not self.alive():
                self.restart()
            self._wait_ready()
            try:
                self.conn.send_bytes(payload)
            except (BrokenPipeError, OSError) as exc:
                self.restart()
                raise WorkerCrashed("the worker was gone before the solve started") from exc
            if not self.conn.poll(hard_timeout):
                self.restart()
                raise WorkerTimeout(f"the solve ran past {hard_timeout:.1f} s and was stopped")
            try:
                data = self.conn.recv_bytes()
            except (EOFError, OSError) as exc:
                self.proc.join(5)
                code = self.proc.exitcode
                self.restart()
                raise WorkerCrashed(
                    f"the worker process died while solving (exit code {code})"
                ) from exc
            return msgpack.unpackb(data, raw=False)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()
        if self.proc is not None:
            self.proc.terminate()
            self.proc.join(5)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join(5)


class WorkerPool:
    """A fixed set of worker slots with a bounded waiting line (asyncio side)."""

    def __init__(self, workers: int, queue_size: int, memory_mb: int = 0) -> None:
        self.size = workers
        self.queue_size = queue_size
        self.slots = [WorkerSlot(memory_mb) for _ in range(workers)]
        self._free: asyncio.Queue[WorkerSlot] = asyncio.Queue()
        for slot in self.slots:
            self._free.put_nowait(slot)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="relucvx-w")
        self.waiting = 0
        self.busy = 0
        self.crashes = 0
        self.timeouts = 0

    def full(self) -> bool:
        return self._free.empty() and self.waiting >= self.queue_size

    async def run(
        self, payload: bytes, hard_timeout: float, *, admit: bool = True, on_slot=None
    ) -> dict:
        """Run one request on a free worker. ``admit``: refuse with :class:`QueueFull`
        when the waiting line is full (job consumers wait instead). ``on_slot`` is called
        with the worker slot once one is taken (to interrupt it later)."""
        if admit and self.full():
            raise QueueFull
        self.waiting += 1
        try:
            slot = await self._free.get()
        finally:
            self.waiting -= 1
        self.busy += 1
        if on_slot is not None:
            on_slot(slot)
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._executor, slot.call, payload, hard_timeout)

        def release(_f: asyncio.Future) -> None:
            self.busy -= 1
            self._free.put_nowait(slot)

        fut.add_done_callback(release)
        try:
            return await asyncio.shield(fut)
        except WorkerCrashed:
            self.crashes += 1
            raise
        except WorkerTimeout:
            self.timeouts += 1
            raise

    def alive(self) -> int:
        return sum(slot.alive() for slot in self.slots)

    def heal(self) -> int:
        """Restart idle workers that died (busy ones are restarted by their caller)."""
        restarted = 0
        for slot in self.slots:
            if slot._lock.acquire(blocking=False):
                try:
                    if not slot.alive():
                        slot.restart()
                        restarted += 1
                finally:
                    slot._lock.release()
        return restarted

    def pids(self) -> list[int]:
        return [slot.pid for slot in self.slots if slot.pid is not None]

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Block until every worker has started (used at server start-up)."""
        deadline = time.monotonic() + timeout
        for slot in self.slots:
            with slot._lock:
                if not slot.ready and slot.conn.poll(max(deadline - time.monotonic(), 0.0)):
                    slot._wait_ready()

    def close(self) -> None:
        for slot in self.slots:
            slot.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
