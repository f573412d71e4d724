"""The networks spatialx knows: one ``register_model`` call each, importing no network code.

Architectures are built on demand by :func:`spatialx.models.registry.create_model` from their ``entry``.
"""

from __future__ import annotations

from spatialx.models.registry import ModelSpec, register_model

register_model(ModelSpec(
    name="pnn",
    entry="spatialx.models.pnn:PNN",
    configs={
        "wv3": {"bands": 8, "ratio": 4},
        "qb": {"bands": 4, "ratio": 4},
        "gf2": {"bands": 4, "ratio": 4},
    },
    tasks=("pansharpen",),
    summary="PNN (Masi et al. 2016): 3-layer CNN 9x9/5x5/5x5, widths 64/32, residual on the upsampled MS",
))
