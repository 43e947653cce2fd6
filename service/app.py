"""The FastAPI application: transport, admission and operation around the solver core.

Solves run in worker processes (:mod:`service.workers`) that call
:func:`lightning_relucvx.core.solve`; this module never does mathematics itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import logging
import math
import time
import uuid
from collections import OrderedDict
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from lightning_relucvx import __version__, wire
from lightning_relucvx.core import SolveOptions, resolve_patterns

from .jobs import IdempotencyConflict, JobStore, MemoryJobStore, RedisJobStore
from .metrics import Metrics
from .schema import JOB_STATUS_SCHEMA, REQUEST_SCHEMA, RESULT_SCHEMA
from .settings import Settings
from .workers import QueueFull, WorkerCrashed, WorkerPool, WorkerTimeout

log = logging.getLogger("relucvx.service")
OPEN_PATHS = ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect")


class ApiError(Exception):
    """An error answered with ``status`` and ``{"detail": message, "error": reason}``."""

    def __init__(self, status: int, reason: str, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.reason, self.detail, self.headers = status, reason, detail, headers


def _error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(
        {"detail": exc.detail, "error": exc.reason}, status_code=exc.status, headers=exc.headers
    )


def _body_doc(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": schema},
                "application/msgpack": {
                    "schema": {
                        "type": "string",
                        "format": "binary",
                        "description": "the same fields in msgpack; arrays as "
                        "{dtype, shape, data}, patterns as {packed, shape}",
                    }
                },
            },
        }
    }


def _result_doc(code: str, schema: dict[str, Any], text: str) -> dict[str, Any]:
    return {
        code: {
            "description": text,
            "content": {
                "application/json": {"schema": schema},
                "application/msgpack": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    }


class Service:
    """State of one server process: settings, workers, job store, metrics, idempotency."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.pool: WorkerPool | None = None
        self.store: JobStore | None = None
        self.tasks: list[asyncio.Task] = []
        self._idem: OrderedDict[str, tuple[str, float, asyncio.Future]] = OrderedDict()
        self._info: dict[str, Any] | None = None
        self._mean_solve = 1.0

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        s = self.settings
        self.pool = WorkerPool(s.workers, s.queue_size, s.worker_memory_mb)
        await asyncio.to_thread(self.pool.wait_ready)
        if s.redis_url:
            self.store = RedisJobStore(s.redis_url, ttl=s.job_ttl, lease=s.job_lease)
        else:
            self.store = MemoryJobStore(ttl=s.job_ttl)
        for i in range(s.workers):
            self.tasks.append(asyncio.create_task(self._consume(), name=f"jobs-{i}"))
        self.tasks.append(asyncio.create_task(self._reap(), name="reaper"))
        self.tasks.append(asyncio.create_task(self._heal(), name="healer"))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.store is not None:
            await self.store.close()
        if self.pool is not None:
            await asyncio.to_thread(self.pool.close)

    # ------------------------------------------------------------------ admission
    def check_auth(self, request: Request) -> None:
        key = self.settings.api_key
        if not key:
            return
        given = request.headers.get("x-api-key")
        auth = request.headers.get("authorization", "")
        if given is None and auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        if given is None or not hmac.compare_digest(given.encode(), key.encode()):
            raise ApiError(
                401,
                "unauthorized",
                "missing or wrong API key (send Authorization: Bearer KEY or X-API-Key)",
                {"WWW-Authenticate": "Bearer"},
            )

    async def read_body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        length = request.headers.get("content-length")
        too_big = ApiError(413, "too_large", f"body exceeds the limit of {limit} bytes")
        if length is not None:
            try:
                if int(length) > limit:
                    raise too_big
            except ValueError:
                raise ApiError(400, "malformed", "bad Content-Length header") from None
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_big
            chunks.append(chunk)
        return b"".join(chunks)

    def check_limits(self, problem, options: SolveOptions) -> SolveOptions:
        """Refuse problems beyond the limits (422 naming the limit); cap the time limit
        and the enumeration size. Returns the options to solve with."""
        s = self.settings
        n, d = problem.n, problem.d
        if n > s.max_n:
            raise ApiError(422, "limit", f"n={n} exceeds the limit max_n={s.max_n}")
        if d > s.max_d:
            raise ApiError(422, "limit", f"d={d} exceeds the limit max_d={s.max_d}")
        mode = options.patterns
        if mode.startswith("sample:") and int(mode.split(":")[1]) > s.max_p:
            raise ApiError(
                422, "limit", f"patterns: {mode} asks for more than the limit max_p={s.max_p}"
            )
        if problem.network is not None and problem.network.width > s.max_p:
            raise ApiError(
                422, "limit", f"W1: {problem.network.width} neurons exceed max_p={s.max_p}"
            )
        time_limit = min(options.time_limit or s.max_time_limit, s.max_time_limit)
        options = SolveOptions(
            **{
                **options.__dict__,
                "time_limit": time_limit,
                "max_enumerate": min(options.max_enumerate, s.max_p),
                "linear_solver": (
                    s.linear_solver if options.linear_solver == "auto" else options.linear_solver
                ),
            }
        )
        return options

    def check_patterns(self, problem, options: SolveOptions) -> None:
        s = self.settings
        _, chosen, _ = resolve_patterns(problem, options)
        npat = int(chosen.shape[0])
        if npat > s.max_p:
            raise ApiError(422, "limit", f"P={npat} patterns exceed the limit max_p={s.max_p}")
        ndp = problem.n * problem.d * npat
        if ndp > s.max_ndp:
            raise ApiError(
                422,
                "limit",
                f"n*d*P={problem.n}*{problem.d}*{npat}={ndp} exceeds the limit max_ndp={s.max_ndp}",
            )

    async def admit(self, body: bytes, content_type: str | None) -> tuple[bytes, float]:
        """Decode, validate and bound a request: the canonical worker payload and the
        hard deadline (seconds) after which its worker is killed."""
        try:
            data = await asyncio.to_thread(wire.load_body, body, content_type)
            problem, options, warm = await asyncio.to_thread(wire.decode_request, data)
        except wire.MalformedBody as exc:
            raise ApiError(400, "malformed", str(exc)) from None
        except ValueError as exc:
            raise ApiError(422, "invalid", str(exc)) from None
        options = self.check_limits(problem, options)
        try:
            await asyncio.to_thread(self.check_patterns, problem, options)
        except ValueError as exc:
            raise ApiError(422, "invalid", str(exc)) from None
        payload = await asyncio.to_thread(wire.encode_request, problem, options, warm)
        return payload, self.hard_deadline(options.time_limit)

    def hard_deadline(self, time_limit: float | bytes | None) -> float:
        """Seconds after which a solve's worker is killed: 1.5 x its time limit plus the
        grace. ``time_limit`` may be a canonical payload, whose options hold it."""
        if isinstance(time_limit, bytes):
            with contextlib.suppress(Exception):
                time_limit = wire.loads(time_limit, wire.MSGPACK)["options"]["time_limit"]
        if not isinstance(time_limit, (int, float)):
            time_limit = self.settings.max_time_limit
        return min(time_limit, self.settings.max_time_limit) * 1.5 + self.settings.kill_grace

    def retry_after(self) -> int:
        """Seconds until a worker is likely free: recent mean solve time times the line."""
        assert self.pool is not None
        line = (self.pool.waiting + 1) / self.pool.size
        return int(min(60, max(1, math.ceil(self._mean_solve * line))))

    # ------------------------------------------------------------------ solving
    async def run(
        self, payload: bytes, hard: float, *, kind: str, admit: bool, on_slot=None
    ) -> bytes:
        """Solve on a worker; the binary result or an :class:`ApiError`."""
        assert self.pool is not None
        t0 = time.perf_counter()
        try:
            reply = await self.pool.run(payload, hard, admit=admit, on_slot=on_slot)
        except QueueFull:
            retry = self.retry_after()
            raise ApiError(
                429,
                "queue_full",
                f"all {self.pool.size} workers are busy and {self.pool.queue_size} requests "
                "are waiting; retry later",
                {"Retry-After": str(retry)},
            ) from None
        except WorkerTimeout as exc:
            raise ApiError(504, "timeout", str(exc)) from None
        except WorkerCrashed as exc:
            raise ApiError(
                500, "worker_crashed", f"{exc}; the service is still up, the request may be retried"
            ) from None
        finally:
            took = time.perf_counter() - t0
            self.metrics.solve_seconds.labels(kind).observe(took)
            self._mean_solve = 0.8 * self._mean_solve + 0.2 * took
        if not reply.get("ok"):
            reason = reply.get("kind", "error")
            status = 422 if reason in ("invalid", "memory") else 500
            raise ApiError(status, reason, reply.get("message", "solve failed"))
        result = reply["result"]
        with contextlib.suppress(Exception):
            status = wire.loads(result, wire.MSGPACK).get("status", "unknown")
            self.metrics.solves.labels(status).inc()
        return result

    async def solve_once(self, key: str | None, digest: str, payload_fn) -> tuple[bytes, bool]:
        """Solve, or reuse the answer of an earlier request with the same idempotency key.
        Returns (binary result, replayed)."""
        if key is None:
            payload, hard = await payload_fn()
            return await self.run(payload, hard, kind="sync", admit=True), False
        now = time.monotonic()
        while self._idem and next(iter(self._idem.values()))[1] < now:
            self._idem.popitem(last=False)
        if key in self._idem:
            old_digest, _, fut = self._idem[key]
            if old_digest != digest:
                raise ApiError(
                    422, "idempotency", "Idempotency-Key was used before with a different body"
                )
            return await asyncio.shield(fut), True
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._idem[key] = (digest, now + self.settings.idempotency_ttl, fut)
        while len(self._idem) > self.settings.idempotency_max:
            self._idem.popitem(last=False)
        try:
            payload, hard = await payload_fn()
            result = await self.run(payload, hard, kind="sync", admit=True)
        except BaseException as exc:
            self._idem.pop(key, None)  # failures are not remembered: a retry solves again
            fut.set_exception(exc)
            fut.exception()  # mark retrieved
            raise
        fut.set_result(result)
        return result, False

    # ------------------------------------------------------------------ jobs
    async def _consume(self) -> None:
        assert self.store is not None
        while True:
            try:
                job = await self.store.claim(1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # store unreachable: wait and retry
                log.warning("job store: %s", exc)
                await asyncio.sleep(1.0)
                continue
            if job is None or job.request is None:
                continue
            running: dict[str, Any] = {}
            renew = asyncio.create_task(self._renew(job.id, running))
            try:
                hard = self.hard_deadline(job.request)
                result = await self.run(
                    job.request,
                    hard,
                    kind="job",
                    admit=False,
                    on_slot=functools.partial(running.__setitem__, "slot"),
                )
                await self.store.finish(job.id, result, None)
            except ApiError as exc:
                reason = "cancelled" if running.get("cancelled") else exc.reason
                self.metrics.failures.labels(reason).inc()
                await self.store.finish(job.id, None, {"status": exc.status, "detail": exc.detail})
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("job %s", job.id)
                await self.store.finish(job.id, None, {"status": 500, "detail": repr(exc)})
            finally:
                renew.cancel()

    async def _renew(self, job_id: str, running: dict[str, Any]) -> None:
        """Renew the job's lease while it runs; stop its worker if the job is cancelled."""
        assert self.store is not None
        every = min(max(self.settings.job_lease / 3, 0.2), 1.0)
        last = time.monotonic()
        while True:
            await asyncio.sleep(every)
            with contextlib.suppress(Exception):
                if time.monotonic() - last >= self.settings.job_lease / 3:
                    await self.store.renew(job_id)
                    last = time.monotonic()
                job = await self.store.get(job_id)
                if job is not None and job.status == "cancelled" and "slot" in running:
                    running["cancelled"] = True
                    running["slot"].interrupt()
                    return

    async def _reap(self) -> None:
        assert self.store is not None
        while True:
            await asyncio.sleep(max(self.settings.job_lease / 3, 0.5))
            try:
                moved = await self.store.requeue_expired()
                if moved:
                    log.warning("requeued %d job(s) whose replica stopped", moved)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("job reaper: %s", exc)

    async def _heal(self) -> None:
        assert self.pool is not None
        while True:
            await asyncio.sleep(1.0)
            try:
                restarted = await asyncio.to_thread(self.pool.heal)
                if restarted:
                    log.warning("restarted %d worker process(es) that had died", restarted)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("worker healer: %s", exc)

    # ------------------------------------------------------------------ info
    def info(self) -> dict[str, Any]:
        if self._info is None:
            import scs

            from lightning_relucvx.solvers import available_linear_solvers, gpu_linear_solver
            from lightning_relucvx.solvers.firstorder import resolve_device

            gpu = gpu_linear_solver()
            default = (
                self.settings.linear_solver if self.settings.linear_solver != "auto" else gpu
            ) or "qdldl"
            self._info = {
                "version": __version__,
                "scs_version": getattr(scs, "__version__", "unknown"),
                "linear_solvers": list(available_linear_solvers()),
                "gpu": {
                    "present": gpu is not None,
                    "used": default in ("cudss", "gpu_indirect"),
                    "backend": gpu,
                },
                "default_linear_solver": default,
                # where the firstorder solver runs with device=auto (torch's view)
                "firstorder_device": resolve_device("auto"),
            }
        assert self.pool is not None and self.store is not None
        return {
            **self._info,
            "job_store": self.store.kind,
            "limits": self.settings.limits(),
            "auth": bool(self.settings.api_key),
        }


def _want_binary(request: Request) -> bool:
    accept = request.headers.get("accept")
    if accept and accept.strip() not in ("*/*", ""):
        return any(wire.is_binary(part) for part in accept.split(","))
    return wire.is_binary(request.headers.get("content-type"))


def _content_type_ok(request: Request) -> str:
    ctype = request.headers.get("content-type", "application/json")
    base = ctype.split(";")[0].strip().lower()
    if base not in (wire.JSON, *wire.MSGPACK_TYPES):
        raise ApiError(
            415,
            "media_type",
            f"Content-Type {base!r} not supported; use {wire.JSON} or {wire.MSGPACK}",
        )
    return ctype


def _idempotency(request: Request, body: bytes, ctype: str) -> tuple[str | None, str]:
    key = request.headers.get("idempotency-key")
    if key is not None and not (1 <= len(key) <= 200 and key.isprintable()):
        raise ApiError(400, "idempotency", "Idempotency-Key must be 1 to 200 printable characters")
    digest = hashlib.sha256(ctype.split(";")[0].encode() + b"\0" + body).hexdigest()
    return key, digest


def create_app(settings: Settings | None = None) -> FastAPI:
    """The ASGI app; settings from the environment unless given."""
    settings = settings or Settings.from_env()
    svc = Service(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await svc.start()
        try:
            yield
        finally:
            await svc.stop()

    app = FastAPI(
        title="relucvx solver service",
        version=__version__,
        description="Solves the convex reformulation of two-layer ReLU training problems "
        "(see lightning_relucvx). Bodies are JSON or msgpack (Content-Type); answers follow "
        "Accept, else the request's Content-Type.",
        lifespan=lifespan,
    )
    app.state.service = svc

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        svc.metrics.failures.labels(exc.reason).inc()
        return _error_response(exc)

    @app.middleware("http")
    async def _count(request: Request, call_next):
        path = request.url.path
        try:
            if path.startswith("/v1/"):
                svc.check_auth(request)
            response = await call_next(request)
        except ApiError as exc:
            if exc.reason == "unauthorized":
                svc.metrics.failures.labels("unauthorized").inc()
            response = _error_response(exc)
        route = request.scope.get("route")
        svc.metrics.requests.labels(
            request.method, getattr(route, "path", "other"), str(response.status_code)
        ).inc()
        return response

    def respond(result: bytes, binary: bool, headers: dict | None = None) -> Response:
        body = wire.transcode(result, to_binary=binary)
        return Response(body, media_type=wire.media_type(binary), headers=headers)

    @app.post(
        "/v1/solve",
        summary="Solve one problem and wait for the result",
        openapi_extra=_body_doc(REQUEST_SCHEMA),
        responses={
            **_result_doc("200", RESULT_SCHEMA, "The report, optimal weights and solution"),
            400: {"description": "Malformed body"},
            401: {"description": "Missing or wrong API key"},
            413: {"description": "Body too large"},
            415: {"description": "Unsupported Content-Type"},
            422: {"description": "Invalid problem or a limit exceeded"},
            429: {"description": "Queue full (see Retry-After)"},
            504: {"description": "The solve ran past its time limit and was stopped"},
        },
    )
    async def solve(request: Request) -> Response:
        ctype = _content_type_ok(request)
        body = await svc.read_body(request)
        key, digest = _idempotency(request, body, ctype)

        async def payload():
            return await svc.admit(body, ctype)

        result, replayed = await svc.solve_once(key, digest, payload)
        headers = {"Idempotent-Replayed": "true"} if replayed else None
        return respond(result, _want_binary(request), headers)

    @app.post(
        "/v1/jobs",
        status_code=202,
        summary="Queue a solve; poll the Location it answers",
        openapi_extra=_body_doc(REQUEST_SCHEMA),
        responses={
            202: {
                "description": "Accepted",
                "content": {"application/json": {"schema": JOB_STATUS_SCHEMA}},
            },
            400: {"description": "Malformed body"},
            413: {"description": "Body too large"},
            422: {"description": "Invalid problem or a limit exceeded"},
            429: {"description": "Too many queued jobs (see Retry-After)"},
        },
    )
    async def submit_job(request: Request) -> Response:
        ctype = _content_type_ok(request)
        body = await svc.read_body(request)
        key, digest = _idempotency(request, body, ctype)
        assert svc.store is not None
        if await svc.store.depth() >= settings.max_queued_jobs:
            raise ApiError(
                429,
                "queue_full",
                f"{settings.max_queued_jobs} jobs are queued; retry later",
                {"Retry-After": "5"},
            )
        payload, _ = await svc.admit(body, ctype)
        job_id = uuid.uuid4().hex
        try:
            job_id = await svc.store.create(job_id, payload, None if key is None else (key, digest))
        except IdempotencyConflict:
            raise ApiError(
                422, "idempotency", "Idempotency-Key was used before with a different body"
            ) from None
        job = await svc.store.get(job_id)
        status = job.public() if job else {"id": job_id, "status": "queued"}
        return JSONResponse(status, status_code=202, headers={"Location": f"/v1/jobs/{job_id}"})

    @app.get(
        "/v1/jobs/{job_id}",
        summary="A job's status, and its result when done",
        responses={
            **_result_doc("200", JOB_STATUS_SCHEMA, "Job status"),
            404: {"description": "No such job"},
        },
    )
    async def get_job(job_id: str, request: Request) -> Response:
        assert svc.store is not None
        job = await svc.store.get(job_id)
        if job is None:
            raise ApiError(404, "not_found", f"no job {job_id!r} (unknown, deleted or expired)")
        out = job.public()
        out["result"] = None if job.result is None else wire.loads(job.result, wire.MSGPACK)
        binary = _want_binary(request)
        return Response(wire.dumps(out, binary), media_type=wire.media_type(binary))

    @app.delete(
        "/v1/jobs/{job_id}",
        summary="Cancel a queued or running job, or delete a finished one",
        responses={
            200: {"description": "Cancelled or deleted"},
            404: {"description": "No such job"},
        },
    )
    async def delete_job(job_id: str) -> JSONResponse:
        assert svc.store is not None
        what = await svc.store.cancel(job_id)
        if what is None:
            raise ApiError(404, "not_found", f"no job {job_id!r}")
        return JSONResponse({"id": job_id, "status": what})

    @app.get("/v1/info", summary="Versions, linear solvers, GPU, limits")
    async def info() -> JSONResponse:
        return JSONResponse(await asyncio.to_thread(svc.info))

    @app.get("/healthz", summary="The server process answers")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get("/readyz", summary="Workers are up and the job store answers")
    async def readyz() -> JSONResponse:
        pool, store = svc.pool, svc.store
        alive = pool.alive() if pool else 0
        store_ok = await store.ping() if store else False
        ready = pool is not None and alive > 0 and store_ok
        body = {"ready": ready, "workers_alive": alive, "job_store": store_ok}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        if svc.pool is not None:
            svc.metrics.queue_depth.labels("sync").set(svc.pool.waiting)
            svc.metrics.workers_busy.set(svc.pool.busy)
            svc.metrics.workers_alive.set(svc.pool.alive())
        if svc.store is not None:
            with contextlib.suppress(Exception):
                svc.metrics.queue_depth.labels("jobs").set(await svc.store.depth())
        return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
