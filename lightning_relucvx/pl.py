"""Lightning, from ``lightning.pytorch`` or, where only that is installed, ``pytorch_lightning``."""

from __future__ import annotations

try:
    import lightning as _package
    from lightning.pytorch import Callback, LightningModule, Trainer
    from lightning.pytorch.loggers import MLFlowLogger
    from lightning.pytorch.utilities.exceptions import MisconfigurationException
except ImportError:  # the standalone package
    import pytorch_lightning as _package
    from pytorch_lightning import Callback, LightningModule, Trainer
    from pytorch_lightning.loggers import MLFlowLogger
    from pytorch_lightning.utilities.exceptions import MisconfigurationException

PACKAGE = _package.__name__
VERSION = _package.__version__

__all__ = [
    "PACKAGE",
    "VERSION",
    "Callback",
    "LightningModule",
    "MLFlowLogger",
    "MisconfigurationException",
    "Trainer",
]
