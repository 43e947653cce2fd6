"""``relucvx check MODEL`` and ``relucvx path MODEL``: the landscape tools on the command line.

MODEL is an ``.npz`` with the names of ``relucvx solve`` (``X``, ``y``, ``beta``, ``W1``,
``b1``, ``w2``, ``b2``, ``loss``, ...) or a Lightning checkpoint (with ``--data DATA.npz``).
Both print one JSON object on stdout; bad input exits 2 with one line on stderr.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="npz with X, y, beta, W1, b1, w2, b2 (or a Lightning checkpoint)")
    p.add_argument("--data", default=None, help="npz with X, y, beta, loss (for checkpoints)")
    p.add_argument("--module", default=None, help="prefix of the two-layer module in a checkpoint")
    p.add_argument("--beta", type=float, default=None, help="override the file's beta")
    p.add_argument("--tol", type=float, default=1e-5, help="relative tolerance (default 1e-5)")
    p.add_argument(
        "--max-enumerate",
        type=int,
        default=20_000,
        help="enumerate every pattern when rank <= 3 and Cover's count is below this",
    )
    p.add_argument(
        "--samples",
        type=int,
        default=None,
        help="sampled patterns when not enumerable (check 1000, path 100)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--solver", default="scs", choices=["scs", "cvxpy"])
    p.add_argument(
        "--eps", type=float, default=None, help="solver tolerance (check 1e-7, path 1e-9)"
    )
    p.add_argument("--time-limit", type=float, default=None, help="seconds per convex solve")


def _problem(args: argparse.Namespace):
    from .landscape import load_model

    return load_model(args.model, data=args.data, module=args.module, beta=args.beta)


def _options(args: argparse.Namespace, cls):
    kwargs = dict(
        tol=args.tol,
        max_enumerate=args.max_enumerate,
        seed=args.seed,
        solver=args.solver,
        time_limit=args.time_limit,
    )
    if args.eps is not None:
        kwargs["eps"] = args.eps
    if args.samples is not None:
        kwargs["samples"] = args.samples
    if hasattr(args, "points"):
        kwargs["points_per_stage"] = args.points
    return cls(**kwargs)


def cmd_check(args: argparse.Namespace) -> int:
    from .landscape import CheckOptions, check

    options = _options(args, CheckOptions)  # bad options fail before any loading
    result = check(_problem(args), options)
    print(json.dumps(result.to_dict(include_weights=args.include_weights)))
    return 0


def plot_path(path, out: str | Path) -> None:
    """A PNG of the objective along the path, stage boundaries and the lower bound marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(path.s, path.objectives, lw=2, label="objective F along the path")
    ax.axhline(
        path.lower_bound, ls="--", color="gray", label=f"lower bound ({path.lower_bound_method})"
    )
    for i, st in enumerate(path.stages):
        ax.axvline(i, color="lightgray", lw=0.8)
        ax.text(i + 0.5, 1.0, st.name, transform=ax.get_xaxis_transform(), ha="center", va="bottom")
    ax.set_xlabel("path parameter s (one unit per stage)")
    ax.set_ylabel("F")
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def cmd_path(args: argparse.Namespace) -> int:
    from .landscape import PathOptions, descent_path

    if args.points < 2:
        raise ValueError(f"points: must be >= 2, got {args.points}")
    options = _options(args, PathOptions)
    path = descent_path(_problem(args), options)
    out = path.to_dict(include_weights=args.include_weights)
    plot = None if args.no_plot else (args.plot or str(Path(args.model).with_suffix(".path.png")))
    try:
        if plot:
            plot_path(path, plot)
            out["plot"] = str(plot)
        text = json.dumps(out)
        if args.json:
            Path(args.json).write_text(text + "\n")
    except OSError as exc:
        raise ValueError(f"cannot write the output ({exc})") from exc
    print(text)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``check`` and ``path`` to ``relucvx``."""
    p = subparsers.add_parser(
        "check", help="is a trained network globally optimal? (verdict, certificate, descent)"
    )
    _add_model_args(p)
    p.add_argument(
        "--include-weights", action="store_true", help="put improved weights in the output"
    )
    p.set_defaults(func=cmd_check)

    p = subparsers.add_parser(
        "path", help="the non-increasing path from a network to the optimum of its sublevel set"
    )
    _add_model_args(p)
    p.add_argument("--points", type=int, default=25, help="samples per stage (default 25)")
    p.add_argument("--json", default=None, help="also write the JSON to this file")
    p.add_argument("--plot", default=None, help="PNG of the objective (default MODEL.path.png)")
    p.add_argument("--no-plot", action="store_true", help="write no PNG")
    p.add_argument(
        "--include-weights", action="store_true", help="put the end network in the output"
    )
    p.set_defaults(func=cmd_path)
