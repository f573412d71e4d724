"""Training and scene adaptation of the fusion networks.

- :mod:`spatialx.training.data`: :class:`PanCollectionDataset` (PanCollection HDF5), :class:`WaldPatchDataset`
  (reduced-resolution patches of the user's own scenes, files or arrays), samplers (:class:`RandomPatchSampler`,
  :class:`GridPatchSampler`, :class:`EpochSampler`), :class:`PatchStream` joining them, and :func:`mix_streams`
  (one stream drawing from several data sets, e.g. one per sensor);
- :mod:`spatialx.training.loop`: :func:`train` (AdamW, clipping, EMA, validation, safetensors checkpoints, exact
  resume), :func:`validate`, :func:`train_model` (the library function behind ``spatialx train``);
- :mod:`spatialx.training.adapt`: :func:`adapt`, fine-tuning a network on the scene it fuses.

Names load on first use, so ``import spatialx.training`` does not import torch.
"""

from __future__ import annotations

from spatialx._lazy import lazy_attributes

_LAZY = {
    "PanCollectionDataset": "spatialx.training.data",
    "WaldPatchDataset": "spatialx.training.data",
    "ArrayScene": "spatialx.training.data",
    "RasterScene": "spatialx.training.data",
    "PatchQuery": "spatialx.training.data",
    "RandomPatchSampler": "spatialx.training.data",
    "GridPatchSampler": "spatialx.training.data",
    "EpochSampler": "spatialx.training.data",
    "PatchStream": "spatialx.training.data",
    "Subset": "spatialx.training.data",
    "collate": "spatialx.training.data",
    "wald_patches": "spatialx.training.data",
    "StreamMixture": "spatialx.training.data",
    "MixtureSampler": "spatialx.training.data",
    "mix_streams": "spatialx.training.data",
    "write_pancollection": "spatialx.training.data",
    "train": "spatialx.training.loop",
    "TrainResult": "spatialx.training.loop",
    "validate": "spatialx.training.loop",
    "make_loss": "spatialx.training.loop",
    "save_checkpoint": "spatialx.training.loop",
    "read_checkpoint": "spatialx.training.loop",
    "train_model": "spatialx.training.loop",
    "TrainModelResult": "spatialx.training.loop",
    "adapt": "spatialx.training.adapt",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = list(_LAZY)
