"""``relucvx``: command-line entry point.

``relucvx solve PROBLEM.npz`` prints one JSON object on stdout. Bad input exits with code 2
and one line on stderr (no traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable, Sequence

EXIT_BAD_INPUT = 2
EXIT_SOLVE_FAILED = 1


class UsageError(Exception):
    """Bad input: reported as one line on stderr with exit code 2."""


def _progress(label: str) -> Callable[[], None]:
    """Print an elapsed-time line on stderr every second while running (terminals only)."""
    if not sys.stderr.isatty():
        return lambda: None
    stop = threading.Event()

    def tick() -> None:
        t0 = time.perf_counter()
        while not stop.wait(1.0):
            sys.stderr.write(f"\r{label}: {time.perf_counter() - t0:5.0f} s")
            sys.stderr.flush()
        sys.stderr.write("\r" + " " * (len(label) + 10) + "\r")

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()

    def done() -> None:
        stop.set()
        thread.join()

    return done


def cmd_solve(args: argparse.Namespace) -> int:
    from .core import SolveOptions, solve
    from .io import load_problem, save_network

    problem = load_problem(args.problem)
    patterns = args.patterns or "auto"
    options = SolveOptions(
        patterns=patterns,
        solver=args.solver,
        eps=args.eps,
        linear_solver=args.linear_solver,
        device=args.device,
        seed=args.seed,
        time_limit=args.time_limit,
    )
    done = _progress(f"relucvx solve {args.problem}")
    try:
        report = solve(problem, options)
    finally:
        done()
    if args.weights_out:
        save_network(args.weights_out, report.optimal_network)
    print(json.dumps(report.to_dict(include_weights=args.include_weights)))
    return 0 if report.ok else EXIT_SOLVE_FAILED


def build_parser() -> argparse.ArgumentParser:
    from .solvers import SOLVERS

    parser = argparse.ArgumentParser(
        prog="relucvx",
        description="Certified global optimality for two-layer ReLU networks.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("solve", help="solve the convex program for a problem in an .npz file")
    p.add_argument(
        "problem", help="npz with X, y, beta and optionally W1, b1, w2, b2, patterns, loss"
    )
    p.add_argument(
        "--patterns",
        default=None,
        help="own | sample:K | all (default: the file's patterns if present, "
        "else own with weights, else all when enumerable)",
    )
    p.add_argument(
        "--solver",
        default="auto",
        choices=["auto", *SOLVERS],
        help="auto (default): SCS on the full conic form for small programs, the working-set "
        "solver beyond; cvxpy: the reference model (Clarabel); firstorder: matrix-free "
        "augmented Lagrangian in PyTorch (GPU with --device)",
    )
    p.add_argument(
        "--device", default="auto", help="torch device of the firstorder solver (auto, cpu, cuda)"
    )
    p.add_argument("--eps", type=float, default=1e-6, help="solver tolerance (default 1e-6)")
    p.add_argument(
        "--linear-solver",
        default="auto",
        help="SCS backend: auto, qdldl, cpu_indirect, cudss, gpu_indirect",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for sampled patterns")
    p.add_argument("--time-limit", type=float, default=None, help="seconds")
    p.add_argument("--weights-out", default=None, help="write the optimal network (npz)")
    p.add_argument(
        "--include-weights", action="store_true", help="put the optimal weights in the JSON output"
    )
    p.set_defaults(func=cmd_solve)
    for register in _EXTRA_COMMANDS:
        register(sub)
    return parser


# Other modules add subcommands here (serve, check, path): each entry is a function that
# takes the subparsers object and registers its parser with ``set_defaults(func=...)``.
_EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


def _load_extra_commands() -> None:
    import importlib

    for module in ("lightning_relucvx.landscape_cli", "service.cli"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and module.startswith(exc.name):
                continue  # that part of the product is not installed
            raise
        if mod.register not in _EXTRA_COMMANDS:  # main() may run more than once in a process
            _EXTRA_COMMANDS.append(mod.register)


def main(argv: Sequence[str] | None = None) -> int:
    _load_extra_commands()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, UsageError) as exc:
        print(f"relucvx {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"relucvx {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
