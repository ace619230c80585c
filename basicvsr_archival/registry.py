"""Registries of the components that config files swap (networks, losses, datasets, transforms, metrics).

Each registry is a child of mmengine's root registry of the same kind, so an mmengine
``Runner`` started with ``default_scope='basicvsr_archival'`` finds our classes first and
mmengine's own (optimizers, hooks, samplers, ...) through the parent.  ``locations`` names
the modules that register into each registry: they are imported explicitly on first build.
"""

from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

MODELS = Registry(
    "model", parent=MMENGINE_MODELS, locations=["basicvsr_archival.models"], scope="basicvsr_archival"
)
DATASETS = Registry(
    "dataset", parent=MMENGINE_DATASETS, locations=["basicvsr_archival.datasets"], scope="basicvsr_archival"
)
TRANSFORMS = Registry(
    "transform",
    parent=MMENGINE_TRANSFORMS,
    locations=["basicvsr_archival.datasets"],
    scope="basicvsr_archival",
)
METRICS = Registry(
    "metric", parent=MMENGINE_METRICS, locations=["basicvsr_archival.evaluation"], scope="basicvsr_archival"
)

__all__ = ["DATASETS", "METRICS", "MODELS", "TRANSFORMS"]
