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
    recipe={},  # spatialx's defaults (LE-Mamba's recipe), as before recipes existed
    summary="PNN (Masi et al. 2016): 3-layer CNN 9x9/5x5/5x5, widths 64/32, residual on the upsampled MS",
))

# LE-Mamba: pansharpening uses the authors' "tiny" model (the constructor's defaults; 0.75 M parameters and 3.50
# GFLOPs on WV3 against the paper's 0.74 M and 3.58 G). The paper's HMIF model (CAVE/Harvard x8: 31-band HSI
# upsampled to the RGB grid, 3-band RGB guide) is 3.158 M parameters and 9.80 GFLOPs, but its configuration is only
# in the supplementary material, which we do not have: ``hmif`` doubles the width (64) and uses two blocks per
# level, otherwise the tiny model (2.96 M parameters, 9.04 GFLOPs at 64 x 64, both within 8 % of the paper);
# ``hmif-tiny`` is the tiny model on HMIF inputs (0.76 M, 3.56 G). Real HS/MS pairs (PRISMA + Sentinel-2: ~230 bands,
# a 4-band guide) take either with their own band counts (``hmif`` by default).
register_model(ModelSpec(
    name="lemamba",
    entry="spatialx.models.lemamba:LEMamba",
    configs={
        "wv3": {"bands": 8, "ratio": 4},
        "qb": {"bands": 4, "ratio": 4},
        "gf2": {"bands": 4, "ratio": 4},
        "hmif": {"bands": 31, "ratio": 8, "guide_bands": 3, "width": 64, "depths": [2, 2, 2]},
        "hmif-tiny": {"bands": 31, "ratio": 8, "guide_bands": 3},
    },
    tasks=("pansharpen", "hmif"),
    task_configs={"hmif": ("hmif", "hmif-tiny")},
    # notes: AdamW lr 1e-3, weight decay 1e-6, gradient clip 0.03, EMA 0.995, L1 + 0.1 (1 - SSIM)
    recipe={"loss": "l1+ssim", "optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-6, "schedule": "none",
            "clip": 0.03, "ema": 0.995, "augment": False},
    summary="LE-Mamba (Cao et al. 2024): U-Net of local-enhanced vision Mamba blocks (windowed + global SS2D) with "
            "state sharing, residual on the upsampled image",
    paper={"params": 0.74e6, "gflops": 3.58, "config": "wv3", "hmif": {"params": 3.158e6, "gflops": 9.80}},
))

# SpaXFus: the authors' pansharpening configuration (notes: GF2 with mid 48, groups 4; K = 9 stages, 4 SXM blocks),
# with 8 bands for WV3 (same 4 groups). The paper reports no parameter or FLOP count; ours: 1.56 M parameters and
# 9.79 GFLOPs (WV3, 64 x 64), 1.54 M and 9.75 G (QB/GF2). ``tiny`` (2 stages, mid 8, one SXM block) is for tests
# and quick CPU runs. HMIF: the notes' Chikusei configuration (a 4-band MSI guide, 128 HS bands, ratio 4, mid 48,
# groups 1); real HS/MS pairs (PRISMA + Sentinel-2: ~230 bands, ratio 3) take it with their own band counts and
# ratio, as ``hmif-tiny`` does for tests. PolSAR: the notes' (2 -> 9 channels, ratio 2, mid 96, groups 3); the
# authors' two high-resolution channels are not described, spatialx's single-pol role is one intensity band, which
# the configuration takes (any guide band count), as ``polsar-tiny`` does. Spatio-temporal: the notes' (4 Landsat
# bands at t1 -> 8 = Landsat t1 and t2 from MODIS t1 and t2, ratio 16, mid 48, groups 2); any band count B (2 B
# output bands, B guide bands) and the run's grid ratio; the stfuse adapter keeps the t2 half.
register_model(ModelSpec(
    name="spaxfus",
    entry="spatialx.models.spaxfus:SpaXFusOnGrid",
    configs={
        "wv3": {"bands": 8, "ratio": 4},
        "qb": {"bands": 4, "ratio": 4},
        "gf2": {"bands": 4, "ratio": 4},
        "tiny": {"bands": 4, "ratio": 4, "stages": 2, "mid": 8, "sxm_blocks": 1, "xim_inner": 4},
        "hmif": {"bands": 128, "ratio": 4, "guide_bands": 4, "mid": 48, "groups": 1},
        "hmif-tiny": {"bands": 128, "ratio": 4, "guide_bands": 4, "stages": 2, "mid": 8, "sxm_blocks": 1,
                      "xim_inner": 4, "groups": 1},
        "polsar": {"bands": 9, "ratio": 2, "guide_bands": 2, "mid": 96, "groups": 3},
        "polsar-tiny": {"bands": 9, "ratio": 2, "guide_bands": 2, "stages": 2, "mid": 8, "sxm_blocks": 1,
                        "xim_inner": 4, "groups": 3},
        "stfuse": {"bands": 8, "ratio": 16, "guide_bands": 4, "mid": 48, "groups": 2},
        "stfuse-tiny": {"bands": 8, "ratio": 16, "guide_bands": 4, "stages": 2, "mid": 8, "sxm_blocks": 1,
                        "xim_inner": 4, "groups": 2},
    },
    tasks=("pansharpen", "hmif", "polsar", "stfuse"),
    task_configs={"hmif": ("hmif", "hmif-tiny"), "polsar": ("polsar", "polsar-tiny"),
                  "stfuse": ("stfuse", "stfuse-tiny")},
    # notes: L1, Adamax lr 1e-4 with OneCycle, gradient clip 0.1, rot90/flip augmentation; they name no weight decay
    # and no EMA, so neither is used
    recipe={"loss": "l1", "optimizer": "adamax", "lr": 1e-4, "weight_decay": 0.0, "schedule": "onecycle",
            "clip": 0.1, "ema": None, "augment": True},
    summary="SpaXFus (He et al. 2025): deep unfolding of the degradation model, 9 stages with a state-space "
            "spatial-X prior (SS2D blocks + a channel-order scan), ODConv head; takes the MS at its own scale",
))

# RWKVFusion: the paper reports 1.21 M parameters and 2.34 GFLOPs on WV3; ours 1.263 M / 2.342 G with 64 channels
# at every level (the notes' 32 -> 64 -> 64 -> 64 gives 0.86 M / 0.92 G: ``wv3-notes``; the module docstring says
# why the paper's sizes need 64 at full resolution). QB/GF2: 1.238 M / 2.279 G. HMIF: the paper's Chikusei/Pavia x4
# (1.888 M, 3.134 G) configuration is not described; ``hmif`` takes the inputs' band counts (102 HS bands + RGB:
# 1.870 M, 3.841 G). The paper's main text names no optimizer or learning rate (its supplement is not in our copy):
# LE-Mamba's recipe (same group, same U-Net family) with the notes' loss, L1 + 0.1 (1 - SSIM), at lr 3e-4: at 1e-3 a
# fresh network's first AdamW steps spiked (scene adaptation on a generated 128 px QuickBird scene, tiny
# configuration: held-out loss 0.0757 -> 0.0468 / 0.0331 after 10 / 30 steps at 1e-3, -> 0.0453 / 0.0294 at 3e-4).
register_model(ModelSpec(
    name="rwkvfusion",
    entry="spatialx.models.rwkvfusion:RWKVFusion",
    configs={
        "wv3": {"bands": 8, "ratio": 4},
        "qb": {"bands": 4, "ratio": 4},
        "gf2": {"bands": 4, "ratio": 4},
        "wv3-notes": {"bands": 8, "ratio": 4, "widths": [32, 64, 64, 64]},
        "tiny": {"bands": 4, "ratio": 4, "widths": [32, 32, 32, 32]},
        "hmif": {"bands": 102, "ratio": 4, "guide_bands": 3},
        "hmif-tiny": {"bands": 31, "ratio": 4, "guide_bands": 3, "widths": [32, 32, 32, 32]},
    },
    tasks=("pansharpen", "hmif"),
    task_configs={"hmif": ("hmif", "hmif-tiny")},
    recipe={"loss": "l1+ssim", "optimizer": "adamw", "lr": 3e-4, "weight_decay": 1e-6, "schedule": "none",
            "clip": 0.03, "ema": 0.995, "augment": False},
    paper={"params": 1.21e6, "gflops": 2.34, "config": "wv3", "hmif": {"params": 1.888e6, "gflops": 3.134}},
    summary="RWKVFusion (Cao et al.): U-Net of bidirectional RWKV blocks (per-head WKV over alternating row/column "
            "scans) with a multi-modal fusion module fed the raw inputs in every block, residual on the upsampled "
            "image",
))

# SSRFN: no public code; built from the paper (its module docstring lists every choice). The paper's configuration:
# 100 bands, SPOT-4's 4-band MSI, ratio 4, width 228: 37.02 M parameters and 197.64 GFLOPs at a 64 x 64 MSI (paper:
# 38.63 M, 193.67 G; its Table VI states no input size and only 64 x 64 fits). PRISMA + Sentinel-2 (60-230 bands,
# ratio 3) take ``hmif`` with their own band counts and ratio. Recipe: the paper's MSE and Adam lr 1e-4 (betas 0.9,
# 0.99 in the paper; torch's default 0.999 here), no weight decay, schedule, clipping or EMA named.
register_model(ModelSpec(
    name="ssrfn",
    entry="spatialx.models.ssrfn:SSRFN",
    configs={
        "hmif": {"bands": 100, "ratio": 4, "guide_bands": 4},
        "tiny": {"bands": 100, "ratio": 4, "guide_bands": 4, "width": 8, "dfe_units": 1, "cfe_iterations": 2,
                 "scm_steps": 2, "sr_stages": 1, "conv3d_channels": 2, "d_state": 4},
    },
    tasks=("hmif",),
    task_configs={"hmif": ("hmif", "tiny")},
    recipe={"loss": "mse", "optimizer": "adam", "lr": 1e-4, "weight_decay": 0.0, "schedule": "none",
            "clip": None, "ema": None, "augment": False},
    paper={"params": 38.63e6, "gflops": 193.67, "config": "hmif"},
    summary="SSRFN (Zhao et al. 2024): CNN-Mamba HS/MS fusion: shared feature extraction, ConvGRU change features "
            "correcting the MSI features, 3D-conv/Mamba spatial and spectral branches, Mamba attention fusion",
))
