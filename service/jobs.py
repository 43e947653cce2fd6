"""Asynchronous job state: in this process (one replica) or in Redis (any replica).

A job is ``queued`` -> ``running`` -> ``done`` | ``failed`` (or ``cancelled``). Its request
is stored as canonical binary bytes; its result as the binary result bytes. With Redis, a
replica that claims a job holds a lease that it renews while solving; a job whose lease
runs out (its replica died or restarted) goes back to the queue, so another replica
finishes it.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

TERMINAL = ("done", "failed", "cancelled")
MAX_ATTEMPTS = 3


@dataclass
class Job:
    id: str
    status: str
    created: float
    updated: float
    attempts: int = 0
    result: bytes | None = None
    error: dict[str, Any] | None = None
    request: bytes | None = field(default=None, repr=False)

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "created": self.created,
            "updated": self.updated,
            "attempts": self.attempts,
            "error": self.error,
        }


class JobStore(Protocol):
    kind: str

    async def create(self, job_id: str, request: bytes, idem: tuple[str, str] | None) -> str: ...
    async def get(self, job_id: str) -> Job | None: ...
    async def claim(self, timeout: float) -> Job | None: ...
    async def renew(self, job_id: str) -> None: ...
    async def finish(
        self, job_id: str, result: bytes | None, error: dict[str, Any] | None
    ) -> None: ...
    async def cancel(self, job_id: str) -> str | None: ...
    async def depth(self) -> int: ...
    async def requeue_expired(self) -> int: ...
    async def ping(self) -> bool: ...
    async def close(self) -> None: ...


class IdempotencyConflict(Exception):
    """The idempotency key was used before with a different body."""


class MemoryJobStore:
    """Jobs in this process's memory (lost when it stops)."""

    kind = "memory"

    def __init__(self, ttl: float = 86400.0) -> None:
        self.ttl = ttl
        self._jobs: dict[str, Job] = {}
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._idem: dict[str, tuple[str, str, float]] = {}

    def _expire(self) -> None:
        now = time.time()
        for jid in [j.id for j in self._jobs.values() if j.updated + self.ttl < now]:
            self._jobs.pop(jid, None)
        for key in [k for k, v in self._idem.items() if v[2] < now]:
            self._idem.pop(key, None)

    async def create(self, job_id: str, request: bytes, idem: tuple[str, str] | None) -> str:
        self._expire()
        if idem is not None:
            key, digest = idem
            if key in self._idem:
                old_id, old_digest, _ = self._idem[key]
                if old_digest != digest:
                    raise IdempotencyConflict
                return old_id
            self._idem[key] = (job_id, digest, time.time() + self.ttl)
        now = time.time()
        self._jobs[job_id] = Job(job_id, "queued", now, now, request=request)
        self._queue.put_nowait(job_id)
        return job_id

    async def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    async def claim(self, timeout: float) -> Job | None:
        try:
            job_id = await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            return None
        job = self._jobs.get(job_id)
        if job is None or job.status != "queued":
            return None
        job.status, job.updated = "running", time.time()
        job.attempts += 1
        return job

    async def renew(self, job_id: str) -> None:
        return None

    async def finish(self, job_id: str, result: bytes | None, error: dict | None) -> None:
        job = self._jobs.get(job_id)
        if job is None or job.status == "cancelled":
            return
        job.status = "done" if error is None else "failed"
        job.result, job.error, job.updated = result, error, time.time()
        job.request = None

    async def cancel(self, job_id: str) -> str | None:
        job = self._jobs.get(job_id)
        if job is None:
            return None
        if job.status in TERMINAL:
            del self._jobs[job_id]
            return "deleted"
        job.status, job.updated, job.request = "cancelled", time.time(), None
        return "cancelled"

    async def depth(self) -> int:
        return sum(1 for j in self._jobs.values() if j.status == "queued")

    async def requeue_expired(self) -> int:
        return 0

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None


class RedisJobStore:
    """Jobs in Redis: a hash per job, a list as the queue, a sorted set of leases."""

    kind = "redis"

    def __init__(
        self, url: str, ttl: float = 86400.0, lease: float = 30.0, prefix: str = "relucvx"
    ) -> None:
        import redis.asyncio as aioredis

        self.r = aioredis.from_url(url)
        self.url = url
        self.ttl = int(ttl)
        self.lease = lease
        self.p = prefix

    def _k(self, job_id: str) -> str:
        return f"{self.p}:job:{job_id}"

    @property
    def _queue(self) -> str:
        return f"{self.p}:queue"

    @property
    def _leases(self) -> str:
        return f"{self.p}:leases"

    async def create(self, job_id: str, request: bytes, idem: tuple[str, str] | None) -> str:
        if idem is not None:
            key, digest = idem
            ikey = f"{self.p}:idem:{key}"
            ok = await self.r.set(ikey, f"{job_id}|{digest}", nx=True, ex=self.ttl)
            if not ok:
                old = (await self.r.get(ikey) or b"").decode()
                old_id, _, old_digest = old.partition("|")
                if old_digest != digest:
                    raise IdempotencyConflict
                return old_id
        now = time.time()
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.hset(
                self._k(job_id),
                mapping={
                    "status": "queued",
                    "created": now,
                    "updated": now,
                    "attempts": 0,
                    "request": request,
                },
            )
            pipe.expire(self._k(job_id), self.ttl)
            pipe.lpush(self._queue, job_id)
            await pipe.execute()
        return job_id

    async def get(self, job_id: str) -> Job | None:
        h = await self.r.hgetall(self._k(job_id))
        if not h:
            return None
        err = h.get(b"error")
        return Job(
            id=job_id,
            status=h[b"status"].decode(),
            created=float(h[b"created"]),
            updated=float(h[b"updated"]),
            attempts=int(h.get(b"attempts", 0)),
            result=h.get(b"result"),
            error=json.loads(err) if err else None,
            request=h.get(b"request"),
        )

    async def claim(self, timeout: float) -> Job | None:
        got = await self.r.brpop([self._queue], timeout=max(1, round(timeout)))
        if not got:
            return None
        job_id = got[1].decode()
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.zadd(self._leases, {job_id: time.time() + self.lease})
            pipe.hget(self._k(job_id), "status")
            _, status = await pipe.execute()
        if status != b"queued":
            await self.r.zrem(self._leases, job_id)
            return None
        await self.r.hset(self._k(job_id), mapping={"status": "running", "updated": time.time()})
        await self.r.hincrby(self._k(job_id), "attempts", 1)
        return await self.get(job_id)

    async def renew(self, job_id: str) -> None:
        await self.r.zadd(self._leases, {job_id: time.time() + self.lease}, xx=True)

    async def finish(self, job_id: str, result: bytes | None, error: dict | None) -> None:
        status = await self.r.hget(self._k(job_id), "status")
        await self.r.zrem(self._leases, job_id)
        if status is None or status == b"cancelled":
            return
        mapping: dict[str, Any] = {
            "status": "done" if error is None else "failed",
            "updated": time.time(),
        }
        if result is not None:
            mapping["result"] = result
        if error is not None:
            mapping["error"] = json.dumps(error)
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.hset(self._k(job_id), mapping=mapping)
            pipe.hdel(self._k(job_id), "request")
            pipe.expire(self._k(job_id), self.ttl)
            await pipe.execute()

    async def cancel(self, job_id: str) -> str | None:
        status = await self.r.hget(self._k(job_id), "status")
        if status is None:
            return None
        if status.decode() in TERMINAL:
            await self.r.delete(self._k(job_id))
            return "deleted"
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.hset(self._k(job_id), mapping={"status": "cancelled", "updated": time.time()})
            pipe.hdel(self._k(job_id), "request")
            pipe.lrem(self._queue, 0, job_id)
            pipe.zrem(self._leases, job_id)
            await pipe.execute()
        return "cancelled"

    async def depth(self) -> int:
        return int(await self.r.llen(self._queue))

    async def requeue_expired(self) -> int:
        """Put jobs whose lease ran out back on the queue (or fail them after retries)."""
        moved = 0
        for raw in await self.r.zrangebyscore(self._leases, "-inf", time.time()):
            job_id = raw.decode()
            if not await self.r.zrem(self._leases, job_id):
                continue  # another replica took it
            job = await self.get(job_id)
            if job is None or job.status != "running":
                continue
            if job.attempts >= MAX_ATTEMPTS:
                await self.finish(
                    job_id,
                    None,
                    {"status": 500, "detail": f"the job lost its worker {job.attempts} times"},
                )
                continue
            async with self.r.pipeline(transaction=True) as pipe:
                pipe.hset(self._k(job_id), mapping={"status": "queued", "updated": time.time()})
                pipe.rpush(self._queue, job_id)
                await pipe.execute()
            moved += 1
        return moved

    async def ping(self) -> bool:
        try:
            return bool(await self.r.ping())
        except Exception:
            return False

    async def close(self) -> None:
        await self.r.aclose()
