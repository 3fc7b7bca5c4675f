"""More than one machine: Ray Data engines for feature extraction and batch ESVs.

Ray is optional (``pip install -e .[distributed]``); it is imported only when an
engine runs, and a missing install is a :class:`~core.errors.UserError` naming that
command. ``python -m core extract --engine ray`` and ``python -m core esvs --engine ray``
use these; docs/distributed.md explains a real cluster.

- :func:`extract_features` — clips' frames flow through ``ray.data``: decoding actors
  (CPU) feed encoder actors (one model load per actor, one GPU each when the cluster
  has GPUs); the driver writes the features into the same :class:`~core.features.FeatureStore`.
- :class:`RayESVEngine` — a :class:`~core.analysis.batch.ClipRowsEngine`: each clip's
  result rows are computed in Ray actors; :func:`~core.analysis.batch.compute_batch_esvs`
  stays the one writer of the results file.
"""

from core.distributed.ray_engine import ExtractionPlan, RayOptions, UnitsToClips, extract_features, import_ray, plan_extraction, ray_cluster
from core.distributed.ray_esvs import RayESVEngine

__all__ = ["ExtractionPlan", "RayESVEngine", "RayOptions", "UnitsToClips", "extract_features", "import_ray", "plan_extraction", "ray_cluster"]
