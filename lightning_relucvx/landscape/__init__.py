"""The paper's landscape tools (Wang, Lacotte & Pilanci, arXiv 2006.05900) on top of the core.

- :func:`check`: is a trained network globally optimal? (``global_optimum``,
  ``stationary_not_global`` or ``not_stationary``, with a certificate or a descent neuron).
- :func:`descent_path`: an explicit continuous path from a network to the optimum of its
  sublevel set along which the objective never increases.
- :func:`minimal_width` and the optimal-set transformations in :mod:`.optimal_set`.
- :func:`load_model`: a network and its data from an ``.npz`` file or a Lightning checkpoint.
"""

from __future__ import annotations

from .check import CheckOptions, CheckResult, DescentNeuron, check
from .inputs import load_model
from .optimal_set import (
    WidthResult,
    add_zero_neurons,
    balance,
    equivalent_networks,
    merge_collinear,
    minimal_width,
    permute,
    rescale_neuron,
    split_neuron,
)
from .path import DescentPath, PathOptions, descent_path

__all__ = [
    "CheckOptions",
    "CheckResult",
    "DescentNeuron",
    "DescentPath",
    "PathOptions",
    "WidthResult",
    "add_zero_neurons",
    "balance",
    "check",
    "descent_path",
    "equivalent_networks",
    "load_model",
    "merge_collinear",
    "minimal_width",
    "permute",
    "rescale_neuron",
    "split_neuron",
]
