"""lightning-relucvx: certified global optimality for two-layer ReLU networks.

The solver core is :func:`solve` on a :class:`Problem`; torch and Lightning pieces are
imported lazily (``lightning_relucvx.modules``, ``lightning_relucvx.callback``).
"""

from __future__ import annotations

from .core import Report, SolveOptions, solve
from .problem import Network, Problem

__version__ = "0.1.0"

__all__ = ["Network", "Problem", "Report", "SolveOptions", "__version__", "solve"]


def __getattr__(name: str):
    if name == "TwoLayerReLU":
        from .modules import TwoLayerReLU

        return TwoLayerReLU
    if name == "ConvexOptimalityCallback":
        from .callback import ConvexOptimalityCallback

        return ConvexOptimalityCallback
    raise AttributeError(f"module 'lightning_relucvx' has no attribute {name!r}")
