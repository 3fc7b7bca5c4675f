"""The models the ESVs explain: single-scale heads, the multiscale TRN built from them
(one forward implementation, :mod:`core.models.multiscale`), batched subset evaluation
for the engine (:mod:`core.models.evaluation`), the registry of model families
(:mod:`core.models.families`: MTRN, TSN, any registered), saving/loading (:mod:`core.models.io`),
training (:mod:`core.models.training`, through :mod:`core.models.fitting`) and class priors (:mod:`core.models.priors`).

Import training, io and priors from their modules (they pull in pandas and the data
layer); the names below are the model classes and forward functions.
"""

from core.models.heads import MTRNHead, TSNHead
from core.models.multiscale import MultiscaleModel, multiscale_logits, position_projections

__all__ = ["MTRNHead", "TSNHead", "MultiscaleModel", "multiscale_logits", "position_projections"]
