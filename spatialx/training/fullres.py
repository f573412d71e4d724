"""Full-resolution scene adaptation: an unsupervised objective on the scene's own PAN and MS (``--adapt-loss``).

Reduced-resolution adaptation (Wald's protocol) trains the network one scale below the one it fuses at. The
full-resolution objective instead fuses patches of the actual PAN and MS and asks two things of the result, in the
spirit of zero-shot pansharpening (Z-PNN, Ciotola et al. 2022), without a reference:

- spectral consistency: the fused patch seen by the MS sensor (each band blurred by its MTF-matched filter,
  :func:`spatialx.filters.mtf_kernel`, as the Wald protocol and Khan's D_lambda do; replicated borders; one sample
  per ``ratio`` pixels at offset ``ratio // 2``, :func:`spatialx.filters.decimate`) must match the MS patch: mean
  absolute difference, in [0, 1] units;
- spatial consistency (after Z-PNN's structural term, which caps the correlation with the PAN by its value one
  scale down; here it is held to it): in every ``window`` x ``window`` PAN-pixel window (stride ``window / 2``)
  each fused band's correlation with the PAN should equal the band's correlation with the PAN one scale down (the
  MS against the PAN degraded onto the MS grid as the MS sensor sees it, in ``window / ratio`` windows, averaged
  over the patch): ``|rho - rho_low|``, averaged over windows and bands. Too little and too much correlation both
  cost, as in D_s; maximising the correlation instead copied the PAN's detail into every band.

loss = spectral + :data:`SPATIAL_WEIGHT` x spatial. On a generated WV3 scene (30 steps from the bundled PNN) weights
1 and 3 gave HQNR 0.930 and 0.926 (the bundled weights alone: 0.901).
``both`` adds the reduced-resolution loss of a Wald example to each full-resolution example.

Patches: a PAN patch of ``P`` pixels at PAN pixel ``(ratio r, ratio c)`` goes with the MS patch of ``P / ratio``
pixels at MS pixel ``(r, c)`` (origins on the MS grid, so the two line up exactly); the network's ``ms`` input is
the MS window (with a margin) upsampled by the 23-tap EXP interpolator, as in training, and cropped. An MS delivered
on the PAN grid (``pan_to_ms == 1``) is itself the network's input, and its MTF-filtered, decimated copy stands in
for the native MS (as :func:`spatialx.evaluate.score_full` does).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from spatialx.errors import InputMismatchError
from spatialx.training.data import MAX_ATTEMPTS, ArrayScene, Example, _seeded, native_key

SPATIAL_WEIGHT = 1.0
WINDOW = 16
ADAPT_LOSSES = ("reduced", "full", "both")
#: The prefix of the full-resolution tensors in a ``both`` example (the Wald example's keys are unprefixed).
FULL = "full/"


def default_adapt_loss(task: str, pan_to_ms: int, ratio: int) -> str:
    """Scene adaptation's objective when none is chosen: ``full`` for pansharpening an MS on its own grid (``ratio``
    times coarser than the PAN; on a generated WorldView-3 scene it beat Wald patches for pnn, spaxfus and
    rwkvfusion, README), ``reduced`` otherwise: an MS delivered on the PAN grid has no native grid for the spectral
    term (only its MTF-degraded copy, and ``full`` lost to ``reduced`` on the QuickBird pair for every network), and
    the other tasks have only the reduced-resolution objective."""
    return "full" if task == "pansharpen" and int(pan_to_ms) == int(ratio) > 1 else "reduced"


class FullResolutionPatches(Dataset):
    """Full-resolution examples ``{"ms": MS upsampled (C, P, P), "pan": (1, P, P), "ms_native": (C, P/r, P/r)}`` in
    [0, 1] (DN / ``max_value``) from in-memory scenes; indexed by ``(scene, row, col)``, the MS-grid origin."""

    def __init__(self, scenes: Sequence[ArrayScene], gains: Sequence[float], ratio: int, patch: int,
                 max_value: float, margin: int = 4):
        from spatialx.filters import degrade_ms

        self.ratio, self.max_value, self.gains = int(ratio), float(max_value), tuple(float(g) for g in gains)
        self.patch = int(patch) // self.ratio * self.ratio
        self.size = self.patch // self.ratio  # MS pixels
        self.margin = int(margin)
        self.bands = scenes[0].bands
        self.pans: list[np.ndarray] = []
        self.natives: list[np.ndarray] = []
        self.delivered: list[np.ndarray | None] = []  # the MS on the PAN grid, when that is how it came
        self.scenes = list(scenes)
        for scene in scenes:
            k = scene.pan_to_ms
            if k == self.ratio:
                native = np.asarray(scene.ms, dtype=np.float32)
                pan = np.asarray(scene.pan[:, :native.shape[1] * k, :native.shape[2] * k], dtype=np.float32)
                self.delivered.append(None)
            elif k == 1:
                rows, cols = scene.ms.shape[1] // self.ratio * self.ratio, scene.ms.shape[2] // self.ratio * self.ratio
                on_pan = np.asarray(scene.ms[:, :rows, :cols], dtype=np.float32)
                native = degrade_ms(on_pan.astype(np.float64), self.gains, self.ratio).astype(np.float32)
                pan = np.asarray(scene.pan[:, :rows, :cols], dtype=np.float32)
                self.delivered.append(on_pan)
            else:
                raise InputMismatchError(f"full-resolution adaptation needs the MS on a grid {self.ratio} times "
                                         f"coarser than the PAN's or on the PAN grid, not {k} times",
                                         hint="use --adapt-loss reduced")
            if min(native.shape[1:]) < self.size:
                raise InputMismatchError(f"the scene (MS {native.shape[2]}x{native.shape[1]} pixels) is smaller than "
                                         f"a {self.size}-pixel MS patch", hint="use a smaller --adapt-patch")
            self.pans.append(pan)
            self.natives.append(native)

    def origins(self, scene: int) -> tuple[int, int]:
        """How many MS-grid origins fit each way."""
        native = self.natives[scene]
        return native.shape[1] - self.size + 1, native.shape[2] - self.size + 1

    def valid(self, query: tuple[int, int, int]) -> bool:
        """False when the patch at ``query`` holds nodata (or non-finite) pixels in the PAN or the MS."""
        index, row, col = query
        r, s = self.ratio, self.size
        pan = self.pans[index][:, row * r:(row + s) * r, col * r:(col + s) * r]
        delivered = self.delivered[index]
        ms = (self.natives[index][:, row:row + s, col:col + s] if delivered is None
              else delivered[:, row * r:(row + s) * r, col * r:(col + s) * r])
        return self.scenes[index].valid(pan, ms)

    def __getitem__(self, query: tuple[int, int, int]) -> Example:
        from spatialx.protocols import expand

        index, row, col = query
        r, s, m = self.ratio, self.size, self.margin
        native, pan = self.natives[index], self.pans[index]
        ms_patch = native[:, row:row + s, col:col + s]
        pan_patch = pan[:, row * r:(row + s) * r, col * r:(col + s) * r]
        delivered = self.delivered[index]
        if delivered is not None:
            lms = delivered[:, row * r:(row + s) * r, col * r:(col + s) * r]
        else:
            top, left = max(0, row - m), max(0, col - m)
            bottom, right = min(native.shape[1], row + s + m), min(native.shape[2], col + s + m)
            up = expand(np.ascontiguousarray(native[:, top:bottom, left:right]), r)
            lms = up[:, (row - top) * r:(row - top + s) * r, (col - left) * r:(col - left + s) * r]
        scale = np.float32(1.0 / self.max_value)
        return {"ms": torch.from_numpy(np.ascontiguousarray(lms) * scale),
                "pan": torch.from_numpy(np.ascontiguousarray(pan_patch) * scale),
                native_key("ms"): torch.from_numpy(np.ascontiguousarray(ms_patch) * scale)}


class FullResolutionStream(Dataset):
    """Example ``k``: a random patch (scene and origin from ``(seed, k)`` only) or, with ``fixed``, the
    ``k``-th of ``fixed`` patches spread evenly over the scenes (held-out evaluation)."""

    is_stream = True  # indexed by sample number (spatialx.training.loop.as_stream takes it as it is)

    def __init__(self, patches: FullResolutionPatches, seed: int = 0, fixed: int | None = None):
        self.patches, self.seed = patches, int(seed)
        self.max_value, self.ratio, self.bands = patches.max_value, patches.ratio, patches.bands
        counts = [patches.origins(i) for i in range(len(patches.natives))]
        self.weights = np.cumsum([a * b for a, b in counts], dtype=np.float64)
        self.weights /= self.weights[-1]
        self.queries: list[tuple[int, int, int]] | None = None
        if fixed is not None:
            grid = [(i, row, col) for i, (rows, cols) in enumerate(counts)
                    for row in range(0, rows, patches.size) for col in range(0, cols, patches.size)]
            grid = [query for query in grid if patches.valid(query)] or grid
            picks = np.linspace(0, len(grid) - 1, min(len(grid), max(1, fixed))).round().astype(int)
            self.queries = [grid[i] for i in picks]

    def __len__(self) -> int:
        return len(self.queries) if self.queries is not None else 2**62

    def query(self, k: int) -> tuple[int, int, int]:
        if self.queries is not None:
            return self.queries[k % len(self.queries)]
        rng = _seeded(self.seed, 0xF011, int(k))
        for _ in range(MAX_ATTEMPTS):  # windows with nodata are drawn again, as Wald patches are
            scene = int(min(np.searchsorted(self.weights, rng.random(), side="right"), len(self.weights) - 1))
            rows, cols = self.patches.origins(scene)
            query = scene, int(rng.integers(rows)), int(rng.integers(cols))
            if self.patches.valid(query):
                break
        return query

    def __getitem__(self, k: int) -> Example:
        return self.patches[self.query(k)]

    def describe(self) -> str:
        return f"full-resolution {self.patches.patch}-pixel patches of {len(self.patches.natives)} window(s)"


class PairedStream(Dataset):
    """Example ``k`` of a ``both`` run: the Wald example ``k`` and the full-resolution example ``k`` (keys
    prefixed :data:`FULL`)."""

    is_stream = True

    def __init__(self, reduced: Any, full: Any):
        self.reduced, self.full = reduced, full
        self.max_value, self.ratio, self.bands = full.max_value, full.ratio, full.bands

    def __len__(self) -> int:
        return min(len(self.reduced), len(self.full))

    def __getitem__(self, k: int) -> Example:
        return {**self.reduced[k], **{FULL + key: value for key, value in self.full[k].items()}}


def local_correlation(x: torch.Tensor, y: torch.Tensor, window: int = WINDOW) -> torch.Tensor:
    """Correlation of ``x`` (B, C, H, W) with ``y`` (B, 1, H, W) in every ``window`` x ``window`` window (stride
    ``window // 2``): (B, C, h, w). Flat windows (no variance) count as uncorrelated."""
    stride = max(1, window // 2)

    def mean(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, window, stride=stride)

    mx, my = mean(x), mean(y)
    cov = mean(x * y) - mx * my
    vx, vy = (mean(x * x) - mx * mx).clamp_min(0), (mean(y * y) - my * my).clamp_min(0)
    return cov / torch.sqrt(vx * vy + 1e-12)


class FullResolutionLoss:
    """``loss(forward, batch)``: spectral + ``spatial_weight`` x spatial on a full-resolution batch (module
    docstring); ``terms(fused, ms_native, pan)`` gives the two terms apart."""

    takes_batch = True
    name = "full-resolution"

    def __init__(self, gains: Sequence[float], ratio: int, spatial_weight: float = SPATIAL_WEIGHT,
                 window: int = WINDOW, prefix: str = ""):
        from spatialx.filters import mtf_kernel

        self.ratio, self.spatial_weight, self.window, self.prefix = int(ratio), float(spatial_weight), window, prefix
        kernels = np.stack([mtf_kernel(g, self.ratio) for g in gains])[:, None]
        self.kernel = torch.from_numpy(np.ascontiguousarray(kernels)).float()  # F.conv2d correlates, as imfilter
        # the PAN one scale down is seen through the MS sensor too (its mean gain), so that both sides of the
        # spatial term's correlation are degraded alike
        self.pan_kernel = torch.from_numpy(np.ascontiguousarray(mtf_kernel(float(np.mean(gains)), self.ratio)))[
            None, None].float()

    def degrade(self, fused: torch.Tensor, kernel: torch.Tensor | None = None) -> torch.Tensor:
        """``fused`` (B, C, H, W) as the MS sensor sees it: MTF-matched blur, one sample per ``ratio`` pixels."""
        kernel = (self.kernel if kernel is None else kernel).to(fused.device, fused.dtype)
        half = kernel.shape[-1] // 2
        blurred = F.conv2d(F.pad(fused, (half, half, half, half), mode="replicate"), kernel, groups=fused.shape[1])
        r = self.ratio
        return blurred[..., r // 2::r, r // 2::r]

    def terms(self, fused: torch.Tensor, ms_native: torch.Tensor, pan: torch.Tensor) -> tuple[torch.Tensor,
                                                                                            torch.Tensor]:
        spectral = (self.degrade(fused) - ms_native).abs().mean()
        # Each band should relate to the PAN as the MS relates to the PAN one scale down (what D_s checks): the
        # target is the band's mean local correlation with the PAN reduced to the MS grid, and both too little and
        # too much correlation cost (maximising it instead copied the PAN into every band: D_s 0.05 -> 0.12).
        low_window = max(2, self.window // self.ratio)
        pan_low = self.degrade(pan, self.pan_kernel)
        target = local_correlation(ms_native, pan_low, low_window).mean(dim=(2, 3), keepdim=True).detach()
        rho = local_correlation(fused, pan, self.window)
        return spectral, (rho - target).abs().mean()

    def __call__(self, forward: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        p = self.prefix
        fused = forward(batch[p + "ms"], batch[p + "pan"])
        spectral, spatial = self.terms(fused, batch[p + native_key("ms")], batch[p + "pan"])
        return spectral + self.spatial_weight * spatial


class BothLoss:
    """The reduced-resolution loss of the Wald example plus the full-resolution loss (:class:`PairedStream`)."""

    takes_batch = True
    name = "reduced+full-resolution"

    def __init__(self, reduced: Any, full: FullResolutionLoss):
        self.reduced, self.full = reduced, full
        self.full.prefix = FULL

    def __call__(self, forward: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        from spatialx.training.data import TARGET

        return self.reduced(forward(batch["ms"], batch["pan"]), batch[TARGET]) + self.full(forward, batch)
