"""Training data: PanCollection HDF5 files, and Wald-protocol patches cut from the user's own scenes.

Every example is a dict of float32 tensors scaled to [0, 1] by the sensor's maximum value, keyed by the task's
roles (:data:`spatialx.tasks.PANSHARPEN`) as the pipeline hands them to a method::

    {"target": (C, P, P), "ms": (C, P, P), "pan": (1, P, P), "ms_native": (C, P / ratio, P / ratio)}

``ms`` (the MS on the PAN grid) and ``pan`` are the network inputs, in the task's ``network_roles`` order
(``model(ms, pan)``); ``target`` is what the network must reproduce; ``ms_native`` the low-resolution MS that
``ms`` was upsampled from (for networks that want it). PanCollection files keep their own key names (``gt``,
``lms``, ``pan``, ``ms``): :data:`PANCOLLECTION_ROLES` maps them.

Sampling is kept apart from the data, as in torchgeo: a dataset turns a *query* into an example (an integer for
:class:`PanCollectionDataset`, a :class:`PatchQuery` window for :class:`WaldPatchDataset`), a sampler says which
query the k-th example of a training run is, and :class:`PatchStream` joins the two into a map-style dataset over
sample numbers ``k = 0, 1, 2, ...``. Samplers are stateless functions of ``(seed, k)``: the k-th example of a run
is the same whatever the batch size, the number of loader workers, or whether the run was interrupted and resumed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from spatialx.errors import InputMismatchError, ReadError, SpatialxError
from spatialx.protocols import reduce_scene
from spatialx.sensors import SensorProfile, get_sensor

Example = dict[str, torch.Tensor]

PANCOLLECTION_KEYS = ("gt", "ms", "lms", "pan")
TARGET = "target"
#: PanCollection HDF5 key -> example key (the pansharpening task's roles).
PANCOLLECTION_ROLES = {"gt": TARGET, "lms": "ms", "pan": "pan", "ms": "ms_native"}


def native_key(role: str) -> str:
    """The example key of ``role`` on its own (coarser) grid."""
    return f"{role}_native"
#: Tries per example before a window with nodata is accepted anyway (keeps sampling total on odd scenes).
MAX_ATTEMPTS = 16


def _seeded(seed: int, *key: int) -> np.random.Generator:
    """A generator that depends only on ``(seed, *key)`` (NumPy's SeedSequence hashing, platform-independent)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *(int(k) for k in key)]))


def collate(examples: Sequence[Example]) -> Example:
    """Stack examples key by key into a batch."""
    return {key: torch.stack([ex[key] for ex in examples]) for key in examples[0]}


# ---------------------------------------------------------------------------------------------- PanCollection
class PanCollectionDataset(Dataset):
    """A PanCollection HDF5 file (keys ``gt``, ``ms``, ``lms``, ``pan``, raw DN), read lazily.

    The file is opened once per process (DataLoader workers each open their own handle) and examples are read one
    by one, so files larger than memory work. The shapes are checked up front: ``gt`` and ``lms`` (N, C, H, W),
    ``pan`` (N, 1, H, W), ``ms`` (N, C, H / r, W / r); ``ms`` may be absent (it is not needed for training). Values
    are divided by ``max_value`` (2047 for WV2/WV3/QB, 1023 for GF-2).
    """

    #: File key -> example key; the keys a file must hold; what the format is called in messages.
    ROLES: Mapping[str, str] = PANCOLLECTION_ROLES
    REQUIRED: tuple[str, ...] = ("gt", "lms", "pan")
    FORMAT = "PanCollection"
    SHAPES = "gt/lms N x C x H x W, pan N x 1 x H x W, ms N x C x H/r x W/r"
    #: The key of the high-resolution guide (the PAN; for hyperspectral files the MS key the file uses).
    guide_key = "pan"

    def __init__(self, path: str | PathLike[str], max_value: float):
        self.path = Path(path)
        self.max_value = float(max_value)
        if self.max_value <= 0:
            raise SpatialxError(f"max_value must be positive, got {max_value}")
        self._file: Any = None
        self._pid: int | None = None
        shapes = self._inspect()
        target = next(key for key, role in self.ROLES.items() if role == TARGET)
        n, c, h, _ = shapes[target]
        self.length, self.bands, self.patch = n, c, h
        self.keys = tuple(k for k in self.ROLES if k in shapes)
        native = next((key for key, role in self.ROLES.items() if role.endswith("_native") and key in shapes), None)
        self.ratio = h // shapes[native][2] if native else None
        self.guide_bands = shapes[self.guide_key][1]

    def _inspect(self) -> dict[str, tuple[int, ...]]:
        import h5py

        if not self.path.is_file():
            raise ReadError("HDF5 file does not exist" if not self.path.exists() else "not a file", path=self.path,
                            hint="check the --h5 path")
        try:
            with h5py.File(self.path, "r") as handle:
                missing = [key for key in self.REQUIRED if key not in handle]
                if missing:
                    raise ReadError(f"HDF5 file lacks the key(s) {', '.join(missing)} (has: "
                                    f"{', '.join(sorted(handle.keys())) or 'none'})", path=self.path,
                                    hint=f"{self.FORMAT} files hold {', '.join(self.ROLES)}")
                shapes = {key: tuple(handle[key].shape) for key in self.ROLES if key in handle}
        except OSError as exc:
            raise ReadError(f"not a readable HDF5 file ({str(exc).splitlines()[0]})", path=self.path) from None
        self._check_shapes(shapes)
        return shapes

    def _bad(self, message: str, shapes: Mapping[str, tuple[int, ...]]) -> ReadError:
        described = ", ".join(f"{k} {v}" for k, v in shapes.items())
        return ReadError(f"{message} ({described})", path=self.path, hint=f"{self.FORMAT} shapes are {self.SHAPES}")

    def _check_shapes(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        for key, shape in shapes.items():
            if len(shape) != 4:
                raise self._bad(f"{key} is not 4-dimensional", shapes)
        n, c, h, w = shapes["gt"]
        if n == 0:
            raise self._bad("the file holds no examples", shapes)
        if shapes["lms"] != shapes["gt"]:
            raise self._bad("lms and gt shapes differ", shapes)
        if shapes["pan"] != (n, 1, h, w):
            raise self._bad("pan is not N x 1 x H x W like gt", shapes)
        if "ms" in shapes:
            mn, mc, mh, mw = shapes["ms"]
            if mn != n or mc != c or mh < 1 or h % mh or w % mw or h // mh != w // mw:
                raise self._bad("ms is not gt reduced by an integer ratio", shapes)

    def _handle(self):
        import h5py

        if self._file is None or self._pid != os.getpid():
            try:
                self._file = h5py.File(self.path, "r")
            except OSError as exc:
                raise ReadError(f"cannot open HDF5 file ({str(exc).splitlines()[0]})", path=self.path) from None
            self._pid = os.getpid()
        return self._file

    def __getstate__(self) -> dict[str, Any]:  # h5py handles do not pickle; each worker opens its own
        return {**self.__dict__, "_file": None, "_pid": None}

    def __len__(self) -> int:
        return self.length

    def _read(self, key: str, index: int | list[int]) -> torch.Tensor:
        try:
            data = self._handle()[key][index]
        except (OSError, KeyError) as exc:
            raise ReadError(f"cannot read {key}[{index}] ({str(exc).splitlines()[0]})", path=self.path) from None
        return torch.from_numpy(np.asarray(data, dtype=np.float64) / self.max_value).float()

    def _complete(self, example: Example) -> Example:
        """The example as read; formats that may omit a network input derive it here."""
        return example

    def __getitem__(self, index: int) -> Example:
        index = int(index)
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} examples")
        index %= self.length
        return self._complete({self.ROLES[key]: self._read(key, index) for key in self.keys})

    def __getitems__(self, indices: Sequence[int]) -> list[Example]:
        """Batched read (one HDF5 read per key; h5py wants sorted unique indices)."""
        wanted = [int(i) % self.length for i in indices]
        unique = sorted(set(wanted))
        arrays = {key: self._read(key, unique) for key in self.keys}
        where = {index: row for row, index in enumerate(unique)}
        return [self._complete({self.ROLES[key]: arrays[key][where[i]] for key in self.keys}) for i in wanted]

    def describe(self) -> str:
        return f"{self.FORMAT} HDF5 {self.path.name} ({self.length} x {self.bands} bands, {self.patch} px)"

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


#: Hyperspectral HDF5 key -> example key (the hmif task's roles); ``RGB`` and ``HRMSI`` both name the high-resolution
#: MS, ``HSI_up`` the LR-HSI already upsampled (derived by bicubic interpolation when absent).
HSI_ROLES = {"GT": TARGET, "HSI_up": "hs", "RGB": "ms", "HRMSI": "ms", "LRHSI": native_key("hs")}


class HSIDataset(PanCollectionDataset):
    """A hyperspectral fusion HDF5 file (CAVE, Harvard, Chikusei, ... as the field distributes them: keys ``GT``,
    ``LRHSI``, ``RGB`` or ``HRMSI``, optionally ``HSI_up``; values in [0, 1]), read lazily as PanCollection files
    are. Shapes: ``GT`` (N, C, H, W), ``LRHSI`` (N, C, H / r, W / r), the MS (N, M, H, W), ``HSI_up`` like ``GT``.
    Examples carry the hmif roles (``target``, ``hs``, ``ms``, ``hs_native``)."""

    ROLES = HSI_ROLES
    REQUIRED = ("GT", "LRHSI")
    FORMAT = "hyperspectral"
    SHAPES = "GT/HSI_up N x C x H x W, LRHSI N x C x H/r x W/r, RGB or HRMSI N x M x H x W"

    def __init__(self, path: str | PathLike[str], max_value: float = 1.0):
        super().__init__(path, max_value)

    def _check_shapes(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        for key, shape in shapes.items():
            if len(shape) != 4:
                raise self._bad(f"{key} is not 4-dimensional", shapes)
        guides = [key for key in ("RGB", "HRMSI") if key in shapes]
        if len(guides) != 1:
            raise self._bad("the file needs one high-resolution MS, RGB or HRMSI" if not guides else
                            "the file holds both RGB and HRMSI: which one is the MS is ambiguous", shapes)
        n, c, h, w = shapes["GT"]
        if n == 0:
            raise self._bad("the file holds no examples", shapes)
        if "HSI_up" in shapes and shapes["HSI_up"] != shapes["GT"]:
            raise self._bad("HSI_up and GT shapes differ", shapes)
        if shapes[guides[0]][0] != n or shapes[guides[0]][2:] != (h, w):
            raise self._bad(f"{guides[0]} is not N x M x H x W like GT", shapes)
        ln, lc, lh, lw = shapes["LRHSI"]
        if ln != n or lc != c or lh < 1 or h % lh or w % lw or h // lh != w // lw:
            raise self._bad("LRHSI is not GT reduced by an integer ratio", shapes)
        self.guide_key = guides[0]

    def _complete(self, example: Example) -> Example:
        if "hs" not in example:
            low = example[native_key("hs")]
            example["hs"] = torch.nn.functional.interpolate(low[None], scale_factor=self.ratio, mode="bicubic",
                                                            align_corners=False)[0]
        return example


def write_pancollection(path: str | PathLike[str], examples: Sequence[Example], max_value: float) -> Path:
    """Write examples (scaled to [0, 1]) as a PanCollection HDF5 file in raw DN (float64)."""
    import h5py

    path = Path(path)
    batch = collate(list(examples))
    with h5py.File(path, "w") as handle:
        for key in PANCOLLECTION_KEYS:
            if PANCOLLECTION_ROLES[key] in batch:
                handle.create_dataset(key, data=batch[PANCOLLECTION_ROLES[key]].double().numpy() * float(max_value))
    return path


# -------------------------------------------------------------------------------------------------- scenes
class _Scene:
    """A PAN/MS pair on nested grids: MS pixel (r, c) covers PAN pixels (oy + k r .. oy + k r + k - 1, ...)."""

    name: str
    bands: int
    pan_to_ms: int
    #: Usable MS rows and columns: [row0, row1) x [col0, col1) (those whose PAN pixels all exist).
    extent: tuple[int, int, int, int]
    offset: tuple[int, int]  # (oy, ox): PAN pixel of MS pixel (0, 0)'s upper-left corner
    nodata: float | None

    @property
    def ms_rows(self) -> int:
        return self.extent[1] - self.extent[0]

    @property
    def ms_cols(self) -> int:
        return self.extent[3] - self.extent[2]

    def _extent(self, ms_shape: tuple[int, int], pan_shape: tuple[int, int]) -> tuple[int, int, int, int]:
        k, (oy, ox) = self.pan_to_ms, self.offset
        r0, c0 = max(0, math.ceil(-oy / k)), max(0, math.ceil(-ox / k))
        r1 = min(ms_shape[0], (pan_shape[0] - oy) // k)
        c1 = min(ms_shape[1], (pan_shape[1] - ox) // k)
        return r0, max(r0, r1), c0, max(c0, c1)

    def read(self, row: int, col: int, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
        """``(pan (1, rows k, cols k), ms (C, rows, cols))`` float32 for the MS window at (row, col)."""
        raise NotImplementedError

    def valid(self, pan: np.ndarray, ms: np.ndarray) -> bool:
        """False when the window holds nodata (or non-finite) pixels."""
        if not (np.isfinite(pan).all() and np.isfinite(ms).all()):
            return False
        if self.nodata is None:
            return True
        return not (np.all(ms == self.nodata, axis=0).any() or (pan == self.nodata).any())


class ArrayScene(_Scene):
    """A scene held in memory: ``pan`` (1, H, W) or (H, W) on the PAN grid, ``ms`` (C, h, w) on its own grid,
    ``H = pan_to_ms * h`` (a larger PAN is cropped; ``pan_to_ms`` defaults to ``H // h``). For hmif the guide (the
    MS, several bands) takes the PAN's place and the HS the MS's (``guide_bands=None`` accepts any count)."""

    def __init__(self, pan: np.ndarray, ms: np.ndarray, pan_to_ms: int | None = None, nodata: float | None = None,
                 name: str = "array", guide_bands: int | None = 1):
        pan = np.asarray(pan)
        pan = pan[None] if pan.ndim == 2 else pan
        ms = np.asarray(ms)
        if pan.ndim != 3 or pan.shape[0] != (guide_bands or pan.shape[0]) or ms.ndim != 3:
            raise InputMismatchError(f"expected pan (1, H, W) and ms (C, h, w), got {pan.shape} and {ms.shape}")
        k = pan.shape[1] // ms.shape[1] if pan_to_ms is None else int(pan_to_ms)
        if k < 1 or pan.shape[1] < k * ms.shape[1] or pan.shape[2] < k * ms.shape[2]:
            raise InputMismatchError(f"PAN {pan.shape[1:]} is not MS {ms.shape[1:]} x {k}",
                                     hint="pass pan_to_ms, the integer PAN/MS pixel-size ratio")
        self.pan, self.ms = pan, ms
        self.name, self.bands, self.pan_to_ms, self.nodata = name, ms.shape[0], k, nodata
        self.offset = (0, 0)
        self.extent = (0, ms.shape[1], 0, ms.shape[2])

    def read(self, row: int, col: int, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
        k = self.pan_to_ms
        ms = self.ms[:, row:row + rows, col:col + cols]
        pan = self.pan[:, row * k:(row + rows) * k, col * k:(col + cols) * k]
        return np.asarray(pan, dtype=np.float32), np.asarray(ms, dtype=np.float32)


class RasterScene(_Scene):
    """A PAN and an MS raster file on nested grids (same CRS, MS pixel = ``pan_to_ms`` x PAN pixel, the MS
    origin on a PAN pixel corner). Windows are read with rasterio, one handle per process."""

    def __init__(self, pan: str | PathLike[str], ms: str | PathLike[str]):
        from spatialx.io.read import open_raster

        self.pan_path, self.ms_path = Path(pan), Path(ms)
        self.name = f"{self.pan_path.name} + {self.ms_path.name}"
        pan_info, ms_info = open_raster(self.pan_path, "PAN"), open_raster(self.ms_path, "MS")
        if pan_info.count != 1:
            raise InputMismatchError(f"PAN has {pan_info.count} bands, expected 1", path=self.pan_path)
        self.bands = ms_info.count
        self.nodata = ms_info.nodata
        self.pan_to_ms, self.offset = self._nesting(pan_info, ms_info)
        self.extent = self._extent(ms_info.grid.shape, pan_info.grid.shape)
        self._handles: tuple[Any, Any] | None = None
        self._pid: int | None = None

    def _nesting(self, pan_info, ms_info) -> tuple[int, tuple[int, int]]:
        pg, mg = pan_info.grid, ms_info.grid
        if not (pan_info.georeferenced and ms_info.georeferenced):
            k = pg.width // max(1, mg.width)
            if k < 1 or pg.height // max(1, mg.height) != k:
                raise InputMismatchError(f"PAN {pg.width}x{pg.height} is not an integer multiple of MS "
                                         f"{mg.width}x{mg.height}", path=self.pan_path)
            return k, (0, 0)
        if pg.crs != mg.crs:
            raise InputMismatchError("PAN and MS are in different CRSs", path=self.ms_path,
                                     hint="reproject the MS onto the PAN's CRS (training needs nested grids)")
        if not (pg.is_north_up and mg.is_north_up):
            raise InputMismatchError("training scenes must be north-up rasters", path=self.ms_path)
        (px, py), (mx, my) = pg.res, mg.res
        k = round(mx / px)
        if k < 1 or abs(mx / px - k) > 1e-6 * k or abs(my / py - k) > 1e-6 * k:
            raise InputMismatchError(f"MS pixel ({mx:g} x {my:g}) is not an integer multiple of the PAN pixel "
                                     f"({px:g} x {py:g})", path=self.ms_path,
                                     hint="training needs nested PAN/MS grids")
        col, row = ~pg.transform @ (mg.transform.c, mg.transform.f)
        ox, oy = round(col), round(row)
        if abs(col - ox) > 1e-3 or abs(row - oy) > 1e-3:
            raise InputMismatchError(f"the MS grid is shifted by a fraction of a PAN pixel ({col:.3f}, {row:.3f})",
                                     path=self.ms_path, hint="training needs nested PAN/MS grids")
        return k, (oy, ox)

    def _datasets(self):
        import rasterio

        if self._handles is None or self._pid != os.getpid():
            self._handles = (rasterio.open(self.pan_path), rasterio.open(self.ms_path))
            self._pid = os.getpid()
        return self._handles

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_handles": None, "_pid": None}

    def read(self, row: int, col: int, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
        from rasterio.errors import RasterioError
        from rasterio.windows import Window

        k, (oy, ox) = self.pan_to_ms, self.offset
        pan_src, ms_src = self._datasets()
        try:
            ms = ms_src.read(window=Window(col, row, cols, rows), out_dtype="float32")
        except RasterioError as exc:
            raise ReadError(f"read failed ({str(exc).splitlines()[0]})", path=self.ms_path) from None
        try:
            pan = pan_src.read(1, window=Window(ox + col * k, oy + row * k, cols * k, rows * k),
                               out_dtype="float32")[None]
        except RasterioError as exc:
            raise ReadError(f"read failed ({str(exc).splitlines()[0]})", path=self.pan_path) from None
        return pan, ms


def as_scene(scene: _Scene | tuple[Any, Any]) -> _Scene:
    """A scene object from a ``(pan, ms)`` pair of paths or arrays (or a scene object)."""
    if isinstance(scene, _Scene):
        return scene
    pan, ms = scene
    if isinstance(pan, np.ndarray) or isinstance(ms, np.ndarray):
        return ArrayScene(pan, ms)
    return RasterScene(pan, ms)


# ------------------------------------------------------------------------------------------ Wald patches
@dataclass(frozen=True)
class PatchQuery:
    """A target window: scene index, upper-left MS pixel (row, col), and size in MS pixels."""

    scene: int
    row: int
    col: int
    size: int


class WaldPatchDataset(Dataset):
    """Reduced-resolution training examples cut from PAN/MS scenes, indexed by :class:`PatchQuery`.

    For a query, the MS window of ``size`` MS pixels (the target, ``gt``) is read with ``margin`` extra MS pixels
    each side where the scene has them, together with the matching PAN window; the pair is degraded by
    :func:`spatialx.protocols.reduce_scene` (MTF-matched filter and decimation of the MS, bicubic reduction of the
    PAN by ``pan_to_ms``, 23-tap EXP re-expansion) and the target window is cut out again. The margin keeps the
    filters' window borders out of the example, and window origins on multiples of ``ratio`` keep the decimation
    phase of the whole scene, so examples are crops of what Wald's protocol gives on the whole scene. The example
    size ``P`` (``target``, ``ms``, ``pan``) is ``size``; ``ms_native`` is ``size / ratio``.
    """

    def __init__(self, scenes: Sequence[_Scene | tuple[Any, Any]], sensor: str | SensorProfile,
                 ratio: int | None = None, margin: int | None = None, max_value: float | None = None,
                 gains: Sequence[float] | None = None):
        self.profile = sensor if isinstance(sensor, SensorProfile) else get_sensor(sensor)
        self.scenes = [as_scene(s) for s in scenes]
        if not self.scenes:
            raise SpatialxError("no training scenes given", hint="pass at least one --scene PAN MS")
        self.ratio = int(ratio if ratio is not None else self.profile.ratio)
        if self.ratio < 1 or self.ratio & (self.ratio - 1):
            raise InputMismatchError(f"the degradation ratio must be a power of two, got {self.ratio}")
        self.margin = int(8 * self.ratio if margin is None else margin) // self.ratio * self.ratio
        self.max_value = float(max_value if max_value is not None else self.profile.max_value)
        self.gains = tuple(gains if gains is not None else self.profile.mtf_gains)
        self.bands = self.scenes[0].bands
        for scene in self.scenes:
            if scene.bands != self.bands:
                raise InputMismatchError(f"scenes have {self.bands} and {scene.bands} MS bands",
                                         path=getattr(scene, "ms_path", None), hint="train on one sensor at a time")
        if len(self.gains) != self.bands:
            raise InputMismatchError(f"the MS has {self.bands} bands, sensor {self.profile.key!r} has "
                                     f"{len(self.gains)}", path=getattr(self.scenes[0], "ms_path", None),
                                     hint="pass the --sensor the scenes come from")

    def check_patch(self, size: int) -> int:
        size = int(size)
        if size % self.ratio or size < 4 * self.ratio:
            raise SpatialxError(f"patch must be a multiple of the ratio {self.ratio} and at least {4 * self.ratio} "
                                f"pixels, got {size}", hint="e.g. --patch 64")
        return size

    def read(self, query: PatchQuery) -> tuple[np.ndarray, np.ndarray, int, int]:
        """The padded PAN/MS windows around ``query`` and the target's offset in them (MS pixels)."""
        scene = self.scenes[query.scene]
        r0, r1, c0, c1 = scene.extent
        top = max(r0, query.row - self.margin)
        left = max(c0, query.col - self.margin)
        top, left = top + (query.row - top) % self.ratio, left + (query.col - left) % self.ratio
        bottom = min(r1, query.row + query.size + self.margin)
        right = min(c1, query.col + query.size + self.margin)
        pan, ms = scene.read(top, left, bottom - top, right - left)
        return pan, ms, query.row - top, query.col - left

    def example(self, query: PatchQuery, require_valid: bool = False) -> Example | None:
        """The example for ``query``; None if ``require_valid`` and nodata lies within the target window or the
        filters' reach around it."""
        pan, ms, dy, dx = self.read(query)
        scene = self.scenes[query.scene]
        if require_valid:  # the target and the reach of the MTF filter around it (20 pixels at ratio 4)
            halo, k = min(self.margin, 5 * self.ratio), scene.pan_to_ms
            y0, x0 = max(0, dy - halo), max(0, dx - halo)
            y1, x1 = dy + query.size + halo, dx + query.size + halo
            if not scene.valid(pan[:, y0 * k:y1 * k, x0 * k:x1 * k], ms[:, y0:y1, x0:x1]):
                return None
        target_grid, native_grid = self.reduce(pan, ms, scene.pan_to_ms)
        p, r = query.size, self.ratio
        window = (slice(None), slice(dy, dy + p), slice(dx, dx + p))
        low = (slice(None), slice(dy // r, (dy + p) // r), slice(dx // r, (dx + p) // r))
        example = {}
        for arrays, where in ((target_grid, window), (native_grid, low)):
            for key, array in arrays.items():
                offset, scale = self.scaling(key, query.scene)
                values = np.ascontiguousarray(array[where])
                example[key] = torch.from_numpy((values - np.float32(offset)) * np.float32(scale) if offset
                                                else values * np.float32(scale))
        return example

    def reduce(self, pan: np.ndarray, ms: np.ndarray,
               pan_to_ms: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Wald's protocol on one window pair: the example's arrays on the target's grid, and on the degraded
        grid (``ratio`` times coarser), by example key."""
        reduced = reduce_scene(pan, ms, self.gains, self.ratio, pan_to_ms)
        return ({TARGET: reduced.reference, "ms": reduced.ms_up, "pan": reduced.pan},
                {native_key("ms"): reduced.ms_lr})

    def scaling(self, key: str, scene: int = 0) -> tuple[float, float]:
        """``(offset, scale)`` taking the values of example ``key`` (of scene number ``scene``) to [0, 1]: the
        sensor's DN range."""
        return 0.0, 1.0 / self.max_value

    def __getitem__(self, query: PatchQuery) -> Example:
        example = self.example(query)
        assert example is not None
        return example

    def describe(self) -> str:
        names = "; ".join(s.name for s in self.scenes[:4]) + ("; ..." if len(self.scenes) > 4 else "")
        return (f"Wald reduced-resolution patches from {len(self.scenes)} scene(s) ({names}), sensor "
                f"{self.profile.key}, ratio {self.ratio}")


class HMIFWaldPatchDataset(WaldPatchDataset):
    """Reduced-resolution hmif examples: the HS is the reference (:func:`spatialx.protocols.reduce_hmif`).

    The scenes pair an MS (the guide, in place of the PAN: any band count) with the HS on its own grid (in place of
    the MS), both in physical units. The MS is degraded onto the HS grid with its MTF, the HS by ``ratio`` (any
    integer, 3 for PRISMA over Sentinel-2) with the HS MTF and re-expanded with bicubic resizing. Example keys are
    the hmif roles: ``target`` (the HS), ``hs`` (re-expanded), ``ms`` (on the HS grid), ``hs_native``; each role
    is scaled to [0, 1] by its sensor's value range.
    """

    def __init__(self, scenes: Sequence[_Scene], sensors: Mapping[str, SensorProfile], ratio: int,
                 margin: int | None = None):
        self.sensors = dict(sensors)
        self.profile = self.sensors["hs"]
        self.scenes = list(scenes)
        if not self.scenes:
            raise SpatialxError("no training scenes given", hint="pass at least one --scene HS MS")
        self.ratio = int(ratio)
        if self.ratio < 2:
            raise InputMismatchError(f"the degradation ratio must be 2 or more, got {self.ratio}")
        self.margin = int(8 * self.ratio if margin is None else margin) // self.ratio * self.ratio
        self.ranges = {role: tuple(map(float, profile.value_range)) for role, profile in self.sensors.items()}
        self.max_value = self.ranges["hs"][1]
        self.bands = self.scenes[0].bands
        for scene in self.scenes:
            if scene.bands != self.bands:
                raise InputMismatchError(f"scenes have {self.bands} and {scene.bands} HS bands",
                                         hint="train on one sensor pair at a time")
        if self.bands != len(self.profile.bands):
            raise InputMismatchError(f"the HS has {self.bands} bands, its sensor profile {len(self.profile.bands)}",
                                     hint="describe the HS with the profile of the file it comes from")

    def reduce(self, pan: np.ndarray, ms: np.ndarray,
               pan_to_ms: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        from spatialx.protocols import reduce_hmif

        reduced = reduce_hmif(ms, pan, self.sensors, pan_to_ms, self.ratio)
        return ({TARGET: reduced.reference, "hs": reduced.hs_up, "ms": reduced.ms}, {native_key("hs"): reduced.hs_lr})

    def scaling(self, key: str, scene: int = 0) -> tuple[float, float]:
        low, high = self.ranges["hs" if key in (TARGET, native_key("hs")) else key]
        return low, 1.0 / (high - low)

    def describe(self) -> str:
        return (f"Wald reduced-resolution hmif patches from {len(self.scenes)} scene(s), sensors "
                f"{self.sensors['hs'].key} + {self.sensors['ms'].key}, ratio {self.ratio}")


class PolSARWaldPatchDataset(WaldPatchDataset):
    """Reduced-resolution polsar examples: the quad-pol C3 is the reference (:func:`spatialx.protocols.reduce_polsar`).

    The scenes pair the single-pol intensity (the guide, in place of the PAN) with the quad-pol C3 on its own grid
    (in place of the MS; ``pan_to_ms`` 1 for a single-pol image simulated from the C3 itself). The C3 is averaged
    over ``ratio x ratio`` blocks and brought back bilinearly, the intensity averaged onto the C3 grid. Example
    keys are the polsar roles: ``target`` (the C3), ``quad`` (re-expanded), ``single`` (on the C3 grid),
    ``quad_native``. Every key of a scene is divided by that scene's level (``levels``, default
    :func:`~spatialx.protocols.polsar_level` of its single-pol intensity), as the fusion method divides a scene.
    """

    def __init__(self, scenes: Sequence[_Scene], ratio: int = 2, levels: Sequence[float] | None = None,
                 margin: int | None = None):
        from spatialx.protocols import polsar_level

        self.profile = get_sensor("radarsat2_quad")
        self.scenes = list(scenes)
        if not self.scenes:
            raise SpatialxError("no training scenes given", hint="pass at least one --scene SINGLE QUAD")
        self.ratio = int(ratio)
        if self.ratio < 2:
            raise InputMismatchError(f"the degradation ratio must be 2 or more, got {self.ratio}")
        self.margin = int(4 * self.ratio if margin is None else margin) // self.ratio * self.ratio
        self.bands = 9
        for scene in self.scenes:
            if scene.bands != 9:
                raise InputMismatchError(f"scene {scene.name}: the quad-pol input has {scene.bands} channels, not "
                                         "the 9 of C3", hint="give a C3 image (or the quad-pol SLC set)")
        if levels is None:  # scenes in memory: their own single-pol intensity
            if not all(isinstance(scene, ArrayScene) for scene in self.scenes):
                raise ValueError("scenes read from files need their levels given")
            levels = [polsar_level(scene.pan) for scene in self.scenes]  # type: ignore[attr-defined]
        if len(levels) != len(self.scenes) or not all(level > 0 for level in levels):
            raise ValueError(f"one positive level per scene needed, got {list(levels)}")
        self.levels = [float(level) for level in levels]
        self.max_value = 1.0  # examples are in units of their scene's level

    def reduce(self, pan: np.ndarray, ms: np.ndarray,
               pan_to_ms: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        from spatialx.protocols import reduce_polsar

        reduced = reduce_polsar(ms, pan, pan_to_ms, self.ratio)
        return ({TARGET: reduced.reference, "quad": reduced.quad_up, "single": reduced.single},
                {native_key("quad"): reduced.quad_lr})

    def scaling(self, key: str, scene: int = 0) -> tuple[float, float]:
        return 0.0, 1.0 / self.levels[scene]

    def describe(self) -> str:
        return f"reduced-resolution polsar patches from {len(self.scenes)} scene(s), ratio {self.ratio}"


def _positions(lo: int, hi: int, size: int, step: int) -> tuple[int, int]:
    """First valid origin (a multiple of ``step`` >= lo) and how many origins fit a window of ``size`` below hi."""
    first = -(-lo // step) * step
    count = (hi - size - first) // step + 1
    return first, max(0, count)


class _WindowSampler:
    """Shared part of the patch samplers: the allowed target origins of each scene within ``rows``."""

    def __init__(self, dataset: WaldPatchDataset, patch: int, rows: tuple[float, float] = (0.0, 1.0)):
        self.dataset = dataset
        self.patch = dataset.check_patch(patch)
        if not 0.0 <= rows[0] < rows[1] <= 1.0:
            raise ValueError(f"rows must be a fraction range within [0, 1], got {rows}")
        step = dataset.ratio
        self.origins: list[tuple[int, int, int, int]] = []  # (row0, n_rows, col0, n_cols) per scene
        for scene in dataset.scenes:
            r0, r1, c0, c1 = scene.extent
            lo = r0 + math.floor(rows[0] * (r1 - r0))
            hi = r0 + math.floor(rows[1] * (r1 - r0))
            first_row, n_rows = _positions(lo, hi, self.patch, step)
            first_col, n_cols = _positions(c0, c1, self.patch, step)
            if n_rows == 0 or n_cols == 0:
                first_row = first_col = n_rows = n_cols = 0
            self.origins.append((first_row, n_rows, first_col, n_cols))
        self.weights = np.array([n_r * n_c for _, n_r, _, n_c in self.origins], dtype=np.float64)
        if self.weights.sum() == 0:
            raise InputMismatchError(f"no scene is large enough for {self.patch}-pixel patches "
                                     f"(MS {', '.join(f'{s.ms_cols}x{s.ms_rows}' for s in dataset.scenes)})",
                                     hint="use a smaller --patch or larger scenes")


class RandomPatchSampler(_WindowSampler):
    """Random target windows of ``patch`` MS pixels (origins on multiples of the ratio), scenes drawn in
    proportion to their number of windows; ``query(k)`` depends only on ``(seed, k)``.

    ``rows`` restricts the windows to a band of each scene's rows (fractions), e.g. ``(0.0, 0.9)`` to hold out
    the bottom tenth for validation. Iterating yields ``length`` queries (torchgeo style).
    """

    def __init__(self, dataset: WaldPatchDataset, patch: int, seed: int = 0, length: int | None = None,
                 rows: tuple[float, float] = (0.0, 1.0)):
        super().__init__(dataset, patch, rows)
        self.seed = int(seed)
        self.length = length
        self.cumulative = np.cumsum(self.weights) / self.weights.sum()

    def query(self, k: int, attempt: int = 0) -> PatchQuery:
        rng = _seeded(self.seed, k, attempt)
        scene = int(min(np.searchsorted(self.cumulative, rng.random(), side="right"), len(self.origins) - 1))
        while self.weights[scene] == 0:  # only reachable through float rounding at the edges
            scene = (scene + 1) % len(self.origins)
        row0, n_rows, col0, n_cols = self.origins[scene]
        step = self.dataset.ratio
        row = row0 + step * int(rng.integers(n_rows))
        col = col0 + step * int(rng.integers(n_cols))
        return PatchQuery(scene, row, col, self.patch)

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError("this sampler is endless; give length= to iterate over it")
        return self.length

    def __iter__(self) -> Iterator[PatchQuery]:
        return (self.query(k) for k in range(len(self)))


class GridPatchSampler(_WindowSampler):
    """Non-overlapping target windows on a regular grid (within ``rows``), at most ``limit`` of them spread
    evenly over the grid: fixed validation patches."""

    def __init__(self, dataset: WaldPatchDataset, patch: int, rows: tuple[float, float] = (0.0, 1.0),
                 limit: int | None = None):
        super().__init__(dataset, patch, rows)
        queries = []
        per_window = self.patch // dataset.ratio
        for index, (row0, n_rows, col0, n_cols) in enumerate(self.origins):
            for i in range(0, n_rows, per_window):
                for j in range(0, n_cols, per_window):
                    queries.append(PatchQuery(index, row0 + i * dataset.ratio, col0 + j * dataset.ratio, self.patch))
        if limit is not None and len(queries) > limit:
            picks = np.linspace(0, len(queries) - 1, limit).round().astype(int)
            queries = [queries[i] for i in picks]
        self.queries = queries

    def __len__(self) -> int:
        return len(self.queries)

    def __iter__(self) -> Iterator[PatchQuery]:
        return iter(self.queries)

    def query(self, k: int, attempt: int = 0) -> PatchQuery:
        return self.queries[k % len(self.queries)]


class EpochSampler:
    """Indices of a sized dataset: a fresh random permutation every epoch, ``query(k)`` a function of
    ``(seed, k)``."""

    def __init__(self, size: int, seed: int = 0):
        if size < 1:
            raise SpatialxError("the training data set is empty")
        self.size, self.seed = int(size), int(seed)
        self._epoch: tuple[int, np.ndarray] | None = None

    def query(self, k: int, attempt: int = 0) -> int:
        epoch, position = divmod(int(k), self.size)
        if self._epoch is None or self._epoch[0] != epoch:
            self._epoch = (epoch, _seeded(self.seed, epoch).permutation(self.size))
        return int(self._epoch[1][position])


class PatchStream(Dataset):
    """Example ``k`` of a training run: ``dataset[sampler.query(k)]`` (map-style over sample numbers).

    With a :class:`WaldPatchDataset`, windows holding nodata are redrawn (``attempt`` 1, 2, ...); with any other
    dataset the sampler's query is used as it is. ``len`` is the sampler's length when it has one, else unbounded
    for practical purposes.
    """

    def __init__(self, dataset: Any, sampler: Any):
        self.dataset, self.sampler = dataset, sampler
        self.max_value = getattr(dataset, "max_value", None)
        self.ratio = getattr(dataset, "ratio", None)
        self.bands = getattr(dataset, "bands", None)

    def __len__(self) -> int:
        try:
            return len(self.sampler)
        except TypeError:
            return 2**62

    def __getitem__(self, k: int) -> Example:
        if isinstance(self.dataset, WaldPatchDataset):
            for attempt in range(MAX_ATTEMPTS):
                example = self.dataset.example(self.sampler.query(k, attempt), require_valid=attempt < MAX_ATTEMPTS - 1)
                if example is not None:
                    return example
        return self.dataset[self.sampler.query(k)]

    def __getitems__(self, ks: Sequence[int]) -> list[Example]:
        if hasattr(self.dataset, "__getitems__") and not isinstance(self.dataset, WaldPatchDataset):
            return self.dataset.__getitems__([self.sampler.query(k) for k in ks])
        return [self[k] for k in ks]

    def describe(self) -> str:
        describe = getattr(self.dataset, "describe", None)
        return describe() if describe else type(self.dataset).__name__


class Subset(Dataset):
    """Examples ``indices`` of a map-style dataset (keeps ``max_value``, ``ratio``, ``bands``)."""

    def __init__(self, dataset: Any, indices: Sequence[int]):
        self.dataset, self.indices = dataset, list(indices)
        for name in ("max_value", "ratio", "bands"):
            setattr(self, name, getattr(dataset, name, None))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Example:
        return self.dataset[self.indices[i]]

    def __getitems__(self, items: Sequence[int]) -> list[Example]:
        if hasattr(self.dataset, "__getitems__"):
            return self.dataset.__getitems__([self.indices[i] for i in items])
        return [self[i] for i in items]

    def describe(self) -> str:
        describe = getattr(self.dataset, "describe", None)
        inner = describe() if describe else type(self.dataset).__name__
        return f"{len(self)} examples of {inner}"


def wald_patches(scenes: Sequence[_Scene | tuple[Any, Any]], sensor: str | SensorProfile, patch: int = 64,
                 seed: int = 0, ratio: int | None = None, margin: int | None = None,
                 holdout: float = 0.0, val_patches: int = 16) -> tuple[PatchStream, PatchStream | None]:
    """``(train, val)``: an endless stream of random Wald patches from ``scenes`` and, when ``holdout`` > 0, a
    fixed set of up to ``val_patches`` non-overlapping patches from the bottom ``holdout`` fraction of each
    scene's rows, which the training windows never overlap (None when no scene has room for one)."""
    dataset = WaldPatchDataset(scenes, sensor, ratio=ratio, margin=margin)
    patch = dataset.check_patch(patch)
    if holdout <= 0:
        return PatchStream(dataset, RandomPatchSampler(dataset, patch, seed=seed)), None
    split = 1.0 - holdout
    try:
        val_sampler = GridPatchSampler(dataset, patch, rows=(split, 1.0), limit=val_patches)
    except InputMismatchError:
        return PatchStream(dataset, RandomPatchSampler(dataset, patch, seed=seed)), None
    train = PatchStream(dataset, RandomPatchSampler(dataset, patch, seed=seed, rows=(0.0, split)))
    return train, PatchStream(dataset, val_sampler)


# ------------------------------------------------------------------------------------------------ mixtures
class StreamMixture(Dataset):
    """Several example streams (e.g. one :class:`WaldPatchDataset` stream per sensor, whose scenes differ in MTF and
    scaling) as one dataset: the query ``(source, k)`` is example ``k`` of stream ``source``.

    All streams must give the same band count and ratio; ``max_value`` is kept only when they agree (examples are
    in [0, 1] whatever the sensor, so it matters only for validation indices).
    """

    def __init__(self, streams: Sequence[Any], names: Sequence[str] | None = None):
        self.streams = list(streams)
        if not self.streams:
            raise SpatialxError("no training data sets given")
        self.names = list(names) if names is not None else [_describe(s) for s in self.streams]
        for name in ("bands", "ratio"):
            values = {getattr(s, name, None) for s in self.streams}
            if len(values) > 1:
                raise InputMismatchError(f"the mixed data sets differ in {name}: {sorted(values, key=str)}",
                                         hint="mix data of one band count and ratio")
            setattr(self, name, values.pop())
        values = {getattr(s, "max_value", None) for s in self.streams}
        self.max_value = values.pop() if len(values) == 1 else None

    def __len__(self) -> int:
        return len(self.streams)

    def __getitem__(self, query: tuple[int, int]) -> Example:
        source, k = query
        return self.streams[source][k]

    def describe(self) -> str:
        return f"mixture of {len(self.streams)} data sets ({'; '.join(self.names)})"


class MixtureSampler:
    """The query of example ``k`` of a :class:`StreamMixture`: a source drawn with probability ``weights`` from
    ``(seed, k)`` alone, and that source's example ``k`` (so a run is reproducible and resumable, as with the
    other samplers)."""

    def __init__(self, weights: Sequence[float], seed: int = 0):
        weights = np.asarray(weights, dtype=np.float64)
        if weights.ndim != 1 or not len(weights) or (weights < 0).any() or weights.sum() <= 0:
            raise SpatialxError(f"mixture weights must be non-negative with a positive sum, got {weights.tolist()}")
        self.weights = weights / weights.sum()
        self.cumulative = np.cumsum(self.weights)
        self.seed = int(seed)

    def query(self, k: int, attempt: int = 0) -> tuple[int, int]:
        draw = _seeded(self.seed, 0x6D6978, k).random()  # a key of its own: not the streams' window draws
        source = int(min(np.searchsorted(self.cumulative, draw, side="right"), len(self.weights) - 1))
        while self.weights[source] == 0:
            source = (source + 1) % len(self.weights)
        return source, int(k)


def mix_streams(streams: Sequence[Any], weights: Sequence[float] | None = None, seed: int = 0,
                names: Sequence[str] | None = None) -> PatchStream:
    """One endless training stream drawing each example from one of ``streams`` (:class:`PatchStream` objects, or
    any map-style data over sample numbers), in proportion to ``weights`` (default: equal)."""
    mixture = StreamMixture(streams, names)
    return PatchStream(mixture, MixtureSampler(weights if weights is not None else [1.0] * len(mixture), seed))


def _describe(data: Any) -> str:
    describe = getattr(data, "describe", None)
    return describe() if describe else type(data).__name__


#: Salt of the augmentation's random stream, so it is not the patch sampler's for the same seed.
_AUGMENT_SALT = 0x5A0F


def symmetry(example: Example, which: int) -> Example:
    """``example`` under symmetry ``which`` of the square (0..7: ``which % 4`` quarter turns, then a left-right
    flip when ``which >= 4``), applied to the last two axes of every tensor alike."""
    out = {}
    for key, tensor in example.items():
        value = torch.rot90(tensor, which % 4, dims=(-2, -1)) if which % 4 else tensor
        out[key] = (torch.flip(value, dims=(-1,)) if which >= 4 else value).contiguous()
    return out


class AugmentedStream(Dataset):
    """A stream of examples with rot90/flip augmentation: example ``k`` is ``stream[k]`` under one of the 8
    symmetries of the square drawn from ``(seed, k)`` only, so a resumed run sees the same examples."""

    is_stream = True

    def __init__(self, stream: Any, seed: int = 0):
        self.stream, self.seed = stream, int(seed)
        for name in ("max_value", "ratio", "bands"):
            setattr(self, name, getattr(stream, name, None))

    def __len__(self) -> int:
        return len(self.stream)

    def which(self, k: int) -> int:
        return int(_seeded(self.seed, _AUGMENT_SALT, int(k)).integers(8))

    def __getitem__(self, k: int) -> Example:
        return symmetry(self.stream[k], self.which(k))

    def __getitems__(self, ks: Sequence[int]) -> list[Example]:
        examples = (self.stream.__getitems__(list(ks)) if hasattr(self.stream, "__getitems__")
                    else [self.stream[k] for k in ks])
        return [symmetry(e, self.which(k)) for e, k in zip(examples, ks, strict=True)]

    def describe(self) -> str:
        return f"{_describe(self.stream)}, rot90/flip augmented"
