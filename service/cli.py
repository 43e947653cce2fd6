"""``relucvx serve``: the solver service under uvicorn (fastapi/uvicorn imported lazily,
so ``relucvx solve`` works without the ``service`` extra)."""

from __future__ import annotations

import argparse
import os


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
        raise ValueError(
            f"the service needs the 'service' extra: pip install 'lightning-relucvx[service]' "
            f"({exc.name} is missing)"
        ) from exc

    from .app import create_app
    from .settings import Settings

    settings = Settings.from_env(workers=args.workers, queue_size=args.queue_size)
    app = create_app(settings)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=10,
        access_log=args.access_log,
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``serve`` to the ``relucvx`` command line."""
    p = subparsers.add_parser(
        "serve",
        help="run the solver service (HTTP; FastAPI + uvicorn)",
        description="Run the solver service. Other settings come from RELUCVX_* environment "
        "variables (RELUCVX_API_KEY, RELUCVX_REDIS_URL, RELUCVX_MAX_N, ...; "
        "see service/settings.py).",
    )
    p.add_argument(
        "--host",
        default=os.environ.get("RELUCVX_HOST", "127.0.0.1"),
        help="address to listen on (default RELUCVX_HOST or 127.0.0.1)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("RELUCVX_PORT", "8000")),
        help="port (default RELUCVX_PORT or 8000)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="solver worker processes (default RELUCVX_WORKERS or 2); one HTTP process "
        "serves them; run replicas for more",
    )
    p.add_argument(
        "--queue-size",
        type=int,
        default=None,
        help="requests that may wait for a worker before 429 (default RELUCVX_QUEUE_SIZE or 16)",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.set_defaults(func=cmd_serve)
