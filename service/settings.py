"""Service settings, read from ``RELUCVX_*`` environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields


def _env(name: str, default: str | None) -> str | None:
    value = os.environ.get(f"RELUCVX_{name.upper()}")
    return default if value in (None, "") else value


@dataclass(frozen=True)
class Settings:
    """Admission limits and operation settings (environment name: ``RELUCVX_<FIELD>``).

    ``api_key``: when set, ``/v1/*`` needs ``Authorization: Bearer KEY`` or ``X-API-Key``.
    ``workers``: solver worker processes. ``queue_size``: requests that may wait for a
    worker before new ones get 429. ``max_time_limit``: seconds any solve may take
    (requests asking for more are capped; the answer's status says ``time_limit``).
    ``redis_url``: where asynchronous jobs live (in this process when unset).
    ``linear_solver``: the SCS backend used for requests that ask for ``auto`` (for
    example ``cudss`` in the GPU image, where GPU detection through torch may not work).
    """

    api_key: str | None = None
    workers: int = 2
    queue_size: int = 16
    max_queued_jobs: int = 256
    max_body_bytes: int = 64 * 1024 * 1024
    max_n: int = 20_000
    max_d: int = 1_000
    max_p: int = 5_000
    max_ndp: int = 50_000_000
    max_time_limit: float = 600.0
    kill_grace: float = 10.0
    worker_memory_mb: int = 0
    redis_url: str | None = None
    linear_solver: str = "auto"
    job_ttl: float = 24 * 3600.0
    job_lease: float = 30.0
    idempotency_ttl: float = 3600.0
    idempotency_max: int = 1024

    @classmethod
    def from_env(cls, **overrides) -> Settings:
        values = {}
        for f in fields(cls):
            raw = _env(f.name, None)
            if raw is None:
                continue
            kind = f.type if isinstance(f.type, str) else f.type.__name__
            try:
                if kind.startswith("int"):
                    values[f.name] = int(raw)
                elif kind.startswith("float"):
                    values[f.name] = float(raw)
                else:
                    values[f.name] = raw
            except ValueError as exc:
                raise ValueError(f"RELUCVX_{f.name.upper()}: cannot read {raw!r}") from exc
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        if settings.workers < 1:
            raise ValueError("workers: must be >= 1")
        if settings.queue_size < 0:
            raise ValueError("queue_size: must be >= 0")
        return settings

    def limits(self) -> dict[str, float | int]:
        return {
            "max_body_bytes": self.max_body_bytes,
            "max_n": self.max_n,
            "max_d": self.max_d,
            "max_p": self.max_p,
            "max_ndp": self.max_ndp,
            "max_time_limit": self.max_time_limit,
            "queue_size": self.queue_size,
            "max_queued_jobs": self.max_queued_jobs,
            "workers": self.workers,
        }
