"""Deterministic, georeferenced synthetic scenes: the demo's, the tests' and the benchmarks' input.

A scene is a small rural landscape (crop parcels with row and tramline textures, ploughed and fallow soil,
pasture, forest and orchards, a village with gabled and flat roofs and their shadows, a meandering river and
a lake, straight and curved roads with markings and cars). Each pixel's reflectance spectrum is a mixture of
a few endmember spectra (:data:`ENDMEMBERS`) averaged over each band of the sensor, plus mild texture noise;
from the resulting high-resolution reference the products are built as a satellite would deliver them:

* ``reference``: ``(C, H, W)`` MS at PAN resolution, DN = 1 + reflectance * 0.8 * max_value (never 0, the
  nodata value);
* ``pan``: ``(H, W)`` = sum_b pan_weight_b * reference_b + tiny noise;
* ``ms``: ``(C, H/r, W/r)``: the reference blurred by the MTF-matched filter and sampled at the centre of
  each ``r x r`` block (:func:`spatialx.filters.decimate_centred`), so that the MS geotransform, which shares
  the PAN origin, is exact.

The landscape is a pure function of ``(seed, size)`` and of pixel coordinates (hash-based noise, an analytic
layout drawn once from ``numpy.random.default_rng(seed)``); the spectra depend on the sensor. Any horizontal
strip can therefore be generated on its own: :func:`iter_strips` renders strips with a margin of
:data:`FILTER_MARGIN` rows so that the 41-tap MTF filter sees what it would see on the whole scene, which
keeps memory bounded (a 16384 px WV3 scene is written in about 1 GB). The reference and PAN of a strip are
bit-identical to the whole-scene ones; the MS agrees to float32 rounding (the filter works by FFT, whose
round-off depends on the array size).

The layout scales with ``size`` (parcels, river and lake grow with the scene) while small objects (houses,
cars, tree crowns, crop rows) keep their size in pixels, so a 64 px scene is a close-up and a 16384 px scene a
landscape; scenes of different sizes with the same seed are different landscapes.

The same landscape also makes a hyperspectral + multispectral scene (:func:`write_hmif_sample`, ``spatialx sample
DIR --task hmif``): reflectance at the bands of a PRISMA-like grid (:func:`prisma_band_grid`; the endmember spectra
continued to 2500 nm) as the 10 m truth, the PRISMA cube at 30 m (the truth MTF-degraded by 3) as an L2D HE5 and a
GeoTIFF, and Sentinel-2's 10 m bands (the truth integrated against their spectral responses) as band COGs with a STAC
item; written in strips that reuse the rows they share, so memory stays flat (about 1.5 GB at 3000 px x 230 bands).
Objects keep their sizes in pixels, so at 10 m houses are blocks and roads broad: the scene is a test of spectral
and spatial fidelity at the MS scale, not a map of a real place.

Spatio-temporal fusion has its own 30 m landscape (:func:`write_stfuse_sample`, ``spatialx sample DIR --task stfuse``):
crop parcels with their own phenology, forest, a river, a lake and a town, seen at three dates by Landsat 8 (Collection
2 Level-2 scene folders at the first and last) and MODIS (MCD43A4 band GeoTIFF sets at all three, the footprint means
of the truth on the global sinusoidal grid), with a forest patch cleared in between and the truth of the middle date
as the reference.

Polarimetric SAR fusion has a scene of its own too (:func:`write_polsar_sample`, ``spatialx sample DIR --task polsar``):
fields (surface scattering), a forest (volume) and a town (double bounce) with smooth boundaries and a lognormal
texture, as quad-pol single-look complex GeoTIFFs at 20 m (scattering vectors drawn from each pixel's expected
covariance), the HH single-look complex image at 10 m and the expected covariance C3 at 10 m as the reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import IntEnum
from os import PathLike
from pathlib import Path

import numpy as np
from affine import Affine

from spatialx.errors import OutputError, SpatialxError
from spatialx.filters import DEFAULT_TAPS, decimate_centred, mtf_filter
from spatialx.sensors import SensorProfile, get_sensor

__all__ = [
    "DEFAULT_CRS",
    "DEFAULT_GSD_PAN_M",
    "DEFAULT_ORIGIN",
    "ENDMEMBERS",
    "GSD_PAN_M",
    "HMIF_BANDS",
    "HMIF_SIZE",
    "MODIS_500M_PIXEL_M",
    "MODIS_GRID_ORIGIN",
    "POLSAR_C3_BANDS",
    "POLSAR_MECHANISMS",
    "POLSAR_RATIO",
    "POLSAR_SIZE",
    "STFUSE_BANDS",
    "STFUSE_DATES",
    "STFUSE_PREDICT",
    "STFUSE_SIZE",
    "LandCover",
    "PolsarMechanism",
    "PolsarRegion",
    "PrismaBandGrid",
    "SceneStrip",
    "StfuseGrids",
    "SyntheticScene",
    "band_reflectance",
    "default_hmif_strip_rows",
    "default_strip_rows",
    "generate_scene",
    "iter_strips",
    "polsar_command",
    "prisma_band_grid",
    "s2_response_weights",
    "stfuse_band_tables",
    "stfuse_command",
    "stfuse_grids",
    "write_hmif_sample",
    "write_polsar_sample",
    "write_sample",
    "write_stfuse_sample",
]

GSD_PAN_M: dict[str, float] = {
    "wv3": 0.31,
    "wv2": 0.46,
    "geoeye1": 0.41,
    "qb": 0.61,
    "ikonos": 0.82,
    "gf2": 0.81,
}
"""PAN ground sampling distance (m, nadir) of the built-in sensors; the MS pixel is ``ratio`` times larger."""

DEFAULT_GSD_PAN_M = 0.5
"""GSD used for sensors not in :data:`GSD_PAN_M` (user profiles)."""

DEFAULT_CRS = "EPSG:32631"
DEFAULT_ORIGIN = (500000.0, 4800000.0)
"""Upper-left corner (easting, northing) of both the PAN and the MS grid: their footprints coincide."""

REFLECTANCE_SCALE = 0.8
"""Reflectance 1 maps to DN ``1 + 0.8 * max_value``; reflectance 0 to DN 1 (0 is nodata)."""

FILTER_MARGIN = 24
"""Extra rows rendered above and below a strip: the 41-tap MTF kernel reaches 20; a multiple of 4 and 8."""

PAN_NOISE = 1e-3
"""Amplitude of PAN's uniform noise as a fraction of ``max_value`` (about 2 DN for an 11-bit sensor)."""

BAND_NOISE = 0.01
"""Relative amplitude of the per-band, per-pixel reflectance noise."""

STRIP_PIXELS = 1 << 22
"""Pixels per strip aimed at by :func:`default_strip_rows` (4 M: ~1 GB of working memory for 8 bands)."""


class LandCover(IntEnum):
    """Codes of :attr:`SyntheticScene.labels`: what each PAN pixel mostly is."""

    UNKNOWN = 0
    WATER = 1
    VEGETATION = 2  # crops, pasture: green-vegetation fraction >= 0.6
    SPARSE_VEGETATION = 3
    TREES = 4
    BARE_SOIL = 5
    ROAD = 6
    BUILDING = 7
    PAVED = 8
    SHADOW = 9


# ------------------------------------------------------------------------------------------------------------
# spectra

_WAVELENGTHS = np.array([400, 450, 500, 550, 600, 650, 680, 700, 720, 750, 800, 850, 900, 950, 1000], float)

ENDMEMBERS: dict[str, tuple[float, ...]] = {
    # green vegetation: chlorophyll absorption in blue and red, green peak, red edge, NIR plateau
    "vegetation": (.030, .035, .045, .110, .070, .045, .035, .080, .220, .420, .480, .490, .490, .470, .470),
    "trees": (.025, .030, .035, .075, .045, .030, .025, .055, .160, .320, .380, .390, .390, .370, .370),
    "dry_vegetation":
        (.060, .075, .095, .130, .170, .200, .210, .220, .240, .270, .300, .320, .330, .330, .340),
    "soil": (.080, .100, .130, .170, .210, .240, .250, .260, .270, .280, .300, .310, .320, .330, .340),
    "wet_soil": (.040, .050, .065, .085, .105, .120, .125, .130, .135, .140, .150, .155, .160, .165, .170),
    # water: low everywhere, lowest in the NIR; turbid water scatters more green and red
    "water": (.060, .065, .060, .050, .035, .025, .020, .017, .014, .010, .007, .005, .004, .003, .003),
    "turbid_water":
        (.060, .070, .080, .100, .100, .090, .085, .075, .060, .040, .025, .018, .012, .008, .006),
    "asphalt": (.050, .055, .060, .065, .070, .075, .077, .078, .080, .083, .088, .092, .095, .098, .100),
    "concrete": (.180, .230, .270, .300, .320, .330, .335, .338, .340, .345, .350, .355, .358, .360, .360),
    "red_tiles": (.060, .065, .070, .090, .170, .260, .290, .300, .310, .320, .340, .350, .360, .370, .380),
    "dark_roof": (.070, .072, .074, .076, .078, .080, .081, .082, .083, .085, .088, .090, .092, .094, .095),
    "metal_roof": (.300, .310, .310, .300, .290, .280, .275, .270, .268, .265, .260, .255, .250, .248, .245),
    "white_paint": (.550, .600, .620, .630, .630, .630, .630, .630, .630, .630, .620, .620, .610, .600, .600),
}
"""Endmember reflectance spectra (0..1) tabulated at 400, 450, ..., 1000 nm (see ``_WAVELENGTHS``)."""

_MATERIALS = tuple(ENDMEMBERS)
(VEG, TREE, DRY, SOIL, WSOIL, WATER, TURBID, ASPHALT, CONCRETE, TILES, DARKROOF, METAL, PAINT) = range(
    len(_MATERIALS))

# What remains of a surface's brightness in shadow (diffuse skylight only, which is bluish).
_SHADOW_TABLE = ((400, .35), (500, .25), (600, .18), (700, .14), (800, .12), (1000, .10))


def band_reflectance(spectrum: np.ndarray | tuple[float, ...], center_nm: float, width_nm: float) -> float:
    """Mean of a spectrum tabulated on ``_WAVELENGTHS`` over a band (``width_nm`` boxcar at ``center_nm``)."""
    grid = np.linspace(center_nm - width_nm / 2.0, center_nm + width_nm / 2.0, 33)
    return float(np.mean(np.interp(grid, _WAVELENGTHS, np.asarray(spectrum, float))))


def _band_tables(profile: SensorProfile) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Endmember matrix (C, K), shadow factor (C,) and additive path radiance (C,), float32."""
    bands = profile.bands
    emat = np.array([[band_reflectance(ENDMEMBERS[m], b.center_nm, b.width_nm) for m in _MATERIALS]
                     for b in bands], dtype=np.float32)
    swl, sval = zip(*_SHADOW_TABLE, strict=True)
    shade = np.array([np.interp(b.center_nm, swl, sval) for b in bands], dtype=np.float32)
    haze = np.array([0.012 * (450.0 / b.center_nm) ** 4 for b in bands], dtype=np.float32)
    return emat, shade, haze


def _pan_weights(profile: SensorProfile) -> np.ndarray:
    w = np.asarray(profile.pan_weights, dtype=np.float64)
    if not np.all(np.isfinite(w)) or w.sum() <= 0:
        w = np.ones(len(profile.bands))
    return (w / w.sum()).astype(np.float32)


# ------------------------------------------------------------------------------------------------------------
# hashing: position-based randomness, identical whichever strip a pixel is rendered in


def _mix32(x: np.ndarray) -> np.ndarray:
    """A good 32-bit integer finaliser (Wellons' lowbias32); ``x`` uint32, returns a new uint32 array."""
    x = x ^ (x >> np.uint32(16))
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


def _hash2(i: np.ndarray, j: np.ndarray, key: int) -> np.ndarray:
    """uint32 hash of integer lattice coordinates (broadcast), decorrelated by ``key``."""
    ui = np.atleast_1d(np.asarray(i, dtype=np.int64)).astype(np.uint32)
    uj = np.atleast_1d(np.asarray(j, dtype=np.int64)).astype(np.uint32)
    return _mix32(_mix32(ui ^ np.uint32(key)) ^ (uj * np.uint32(0x9E3779B1)))


def _unit(h: np.ndarray, shift: int = 8) -> np.ndarray:
    """Uniform float32 in [0, 1) from 24 bits of a hash (``shift`` 8) or 8 bits (``shift`` 0, 8, 16, 24)."""
    if shift == 8:
        return (h >> np.uint32(8)).astype(np.float32) * np.float32(2.0**-24)
    return ((h >> np.uint32(shift)) & np.uint32(0xFF)).astype(np.float32) * np.float32(1.0 / 256.0)


def _signed(h: np.ndarray) -> np.ndarray:
    """Uniform float32 in [-1, 1)."""
    return _unit(h) * np.float32(2.0) - np.float32(1.0)


def _value_noise(xs: np.ndarray, ys: np.ndarray, cell: float, key: int) -> np.ndarray:
    """Smooth value noise in [0, 1) on the pixel grid ``ys x xs`` (1-D float32 centres), lattice ``cell``."""
    inv = np.float32(1.0 / cell)
    gx, gy = xs * inv, ys * inv
    ix, iy = np.floor(gx), np.floor(gy)
    fx, fy = gx - ix, gy - iy
    fx = fx * fx * (np.float32(3) - np.float32(2) * fx)
    fy = fy * fy * (np.float32(3) - np.float32(2) * fy)
    ix, iy = ix.astype(np.int64), iy.astype(np.int64)
    i0, j0 = int(ix.min()), int(iy.min())
    lat = _unit(_hash2(np.arange(i0, int(ix.max()) + 2)[None, :], np.arange(j0, int(iy.max()) + 2)[:, None],
                       key))
    a = ix - i0
    rows = lat[:, a] * (np.float32(1) - fx) + lat[:, a + 1] * fx  # (lattice rows, W)
    b = iy - j0
    return rows[b] * (np.float32(1) - fy)[:, None] + rows[b + 1] * fy[:, None]


def _smooth_noise(xs: np.ndarray, ys: np.ndarray, cell: float, key: int) -> np.ndarray:
    """Two value noises on incommensurate lattices, averaged: hides the square lattice of either one."""
    out = _value_noise(xs, ys, cell, key)
    out += _value_noise(xs + np.float32(0.37 * cell), ys + np.float32(0.61 * cell), cell * 1.618,
                        key ^ 0x5BD1E995)
    out *= np.float32(0.5)
    return out


class _Lattice:
    """Hashes of the integer lattice cells around a set of cells, fetched by index (cheaper than hashing)."""

    def __init__(self, ci: np.ndarray, cj: np.ndarray, key: int):
        self.i0, self.j0 = int(ci.min()) - 1, int(cj.min()) - 1
        self.ni = int(ci.max()) + 2 - self.i0
        nj = int(cj.max()) + 2 - self.j0
        self.hash = _hash2(np.arange(self.i0, self.i0 + self.ni)[None, :],
                           np.arange(self.j0, self.j0 + nj)[:, None], key).ravel()

    def index(self, ci: np.ndarray, cj: np.ndarray, di: int, dj: int) -> np.ndarray:
        return (cj + (dj - self.j0)) * self.ni + (ci + (di - self.i0))

    def cell(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return index % self.ni + self.i0, index // self.ni + self.j0


def _stripes(t: np.ndarray, period: np.ndarray | float) -> np.ndarray:
    """Smooth periodic profile in [0, 1] (1 at the middle of each period) without transcendental functions."""
    f = t / period
    f = f - np.floor(f)
    tri = np.abs(np.float32(2) * f - np.float32(1))
    return np.float32(1) - tri * tri * (np.float32(3) - np.float32(2) * tri)


def _frac(t: np.ndarray) -> np.ndarray:
    return t - np.floor(t)


# ------------------------------------------------------------------------------------------------------------
# layout: everything drawn once from the seed


class _Parcel(IntEnum):
    CEREAL = 0
    RIPENING = 1
    ROWCROP = 2
    PLOUGHED = 3
    GRASS = 4
    FALLOW = 5
    FOREST = 6
    ORCHARD = 7
    URBAN = 8


_PARCEL_PROBS = np.array([0.16, 0.10, 0.12, 0.10, 0.12, 0.07, 0.12, 0.07, 0.14])
_N_DIRECTIONS = 16


@dataclass(frozen=True)
class _Line:
    """A straight road: signed distance ``x * nx + y * ny - c``, along-road coordinate ``x * tx + y * ty``."""

    nx: float
    ny: float
    c: float
    tx: float
    ty: float
    width: float
    markings: bool
    cars: bool
    key: int


@dataclass(frozen=True)
class _Curve:
    """A meandering centreline ``across = centre(along)``, tabulated at pixel centres 0.5 .. size - 0.5."""

    vertical: bool  # True: x = centre(y), tabulated per row; False: y = centre(x), per column
    centre: np.ndarray
    inv_norm: np.ndarray  # 1 / sqrt(1 + centre'^2): turns the axis-parallel offset into a distance
    half_width: np.ndarray

    def distance(self, x: np.ndarray, y: np.ndarray, rows: slice | None = None) -> np.ndarray:
        """Distance to the centreline: ``x`` (1, W), ``y`` (h, 1) of a strip with ``rows``, or any points."""
        if rows is not None:
            if self.vertical:
                return np.abs(x - self.centre[rows, None]) * self.inv_norm[rows, None]
            return np.abs(y - self.centre[None, :]) * self.inv_norm[None, :]
        along, across = (y, x) if self.vertical else (x, y)
        grid = np.arange(self.centre.size, dtype=np.float64) + 0.5
        return np.abs(across - np.interp(along, grid, self.centre)) * np.interp(along, grid, self.inv_norm)

    def half_width_at(self, x: np.ndarray, y: np.ndarray, rows: slice | None = None) -> np.ndarray:
        if rows is not None:
            return self.half_width[rows, None] if self.vertical else self.half_width[None, :]
        grid = np.arange(self.centre.size, dtype=np.float64) + 0.5
        return np.interp(y if self.vertical else x, grid, self.half_width)


@dataclass(frozen=True)
class _Layout:
    size: int
    keys: Mapping[str, int]
    cos_t: float  # parcel grid orientation
    sin_t: float
    field_cell: float
    aspect: float
    dir_cos: np.ndarray  # crop-row directions, per direction index
    dir_sin: np.ndarray
    river: _Curve
    lake: tuple[float, float, float, float, float, float]  # cx, cy, ra, rb, cos, sin
    lines: tuple[_Line, ...]
    curve_road: _Curve
    curve_road_width: float
    shadow_dir: tuple[float, float]  # unit vector along which shadows fall (image x right, y down)
    building_cell: float
    tree_cell: float
    noise_cells: tuple[float, float, float, float]


def _curve(rng: np.random.Generator, size: int, vertical: bool, width: float, amplitude: float,
           wiggle: float) -> _Curve:
    s = np.arange(size, dtype=np.float64) + 0.5
    centre = np.full(size, rng.uniform(0.3, 0.7) * size)
    slope = np.zeros(size)
    harmonics = ((rng.uniform(0.5, 1.2), amplitude), (rng.uniform(1.5, 2.5), amplitude / 3),
                 (rng.uniform(3.5, 5.0), amplitude / 8))
    for k, (freq, amp) in enumerate(harmonics):
        phase = rng.uniform(0, 2 * np.pi)
        arg = 2 * np.pi * freq * s / size + phase
        centre += amp * size * np.sin(arg) * (1.0 if k == 0 else rng.uniform(0.6, 1.0))
        slope += amp * size * np.cos(arg) * 2 * np.pi * freq / size
    tilt = rng.uniform(-0.15, 0.15)
    centre += tilt * (s - size / 2)
    slope += tilt
    phase = rng.uniform(0, 2 * np.pi)
    half = width / 2 * (1 + wiggle * np.sin(2 * np.pi * 1.7 * s / size + phase))
    return _Curve(vertical=vertical, centre=centre.astype(np.float32),
                  inv_norm=(1.0 / np.sqrt(1.0 + slope**2)).astype(np.float32),
                  half_width=half.astype(np.float32))


def _make_layout(size: int, seed: int) -> _Layout:
    rng = np.random.default_rng(seed)
    names = ("noise_fine", "noise_mid", "noise_coarse", "noise_macro", "white", "parcels", "parcel_params",
             "forest", "orchard", "garden", "riparian", "buildings", "cars", "bands", "pan", "urban_ground")
    keys = {n: int(k) for n, k in zip(names, rng.integers(0, 2**32, size=len(names), dtype=np.uint64),
                                      strict=True)}
    theta = rng.uniform(0, np.pi)
    directions = theta + rng.choice([0.0, np.pi / 2], _N_DIRECTIONS) + rng.uniform(-0.08, 0.08, _N_DIRECTIONS)
    field_cell = float(np.clip(size / 4.5, 40, 640))
    river_vertical = bool(rng.integers(2))
    river = _curve(rng, size, river_vertical, width=float(np.clip(size * 0.05, 6, 160)), amplitude=0.10,
                   wiggle=0.2)
    # lake: an ellipse somewhere in the scene, its shore roughened by noise when rendered
    lake = (rng.uniform(0.15, 0.85) * size, rng.uniform(0.15, 0.85) * size,
            float(np.clip(size * rng.uniform(0.06, 0.1), 8, 1200)),
            float(np.clip(size * rng.uniform(0.04, 0.07), 6, 900)))
    lake_angle = rng.uniform(0, np.pi)
    road_width = float(np.clip(size / 40, 4, 22))
    n_lines = 2 + int(size >= 2048) + 2 * int(size >= 8192)
    lines = []
    angle = rng.uniform(0, np.pi)
    for k in range(n_lines):
        if k:
            angle += rng.uniform(np.pi / 5, 4 * np.pi / 5)
        width = road_width if k == 0 else max(3.0, 0.65 * road_width)
        px, py = rng.uniform(0.2, 0.8, 2) * size
        nx, ny = -math.sin(angle), math.cos(angle)
        lines.append(_Line(nx=nx, ny=ny, c=px * nx + py * ny, tx=math.cos(angle), ty=math.sin(angle),
                           width=width, markings=width >= 10, cars=width >= 8,
                           key=int(rng.integers(0, 2**32, dtype=np.uint64))))
    curve_width = max(3.0, 0.7 * road_width)
    curve_road = _curve(rng, size, not river_vertical, width=curve_width, amplitude=0.06, wiggle=0.0)
    azimuth = rng.uniform(-0.35, 0.35) + 1.25 * np.pi  # shadows fall towards the north-west
    return _Layout(
        size=size, keys=keys, cos_t=math.cos(theta), sin_t=math.sin(theta), field_cell=field_cell,
        aspect=float(rng.uniform(1.3, 1.9)),
        dir_cos=np.cos(directions).astype(np.float32), dir_sin=np.sin(directions).astype(np.float32),
        river=river, lake=(*lake, math.cos(lake_angle), math.sin(lake_angle)), lines=tuple(lines),
        curve_road=curve_road, curve_road_width=curve_width,
        shadow_dir=(math.cos(azimuth), math.sin(azimuth)),
        building_cell=float(np.clip(round(size / 16), 16, 40)),
        tree_cell=float(np.clip(size / 40, 6, 14)),
        noise_cells=(4.0, 16.0, 64.0, float(max(64.0, size / 3))),
    )


# ------------------------------------------------------------------------------------------------------------
# rendering


class _Canvas:
    """Per-pixel material abundances (K, N), brightness, shadow fraction and land-cover label of a strip."""

    def __init__(self, n: int):
        self.abundance = np.zeros((len(_MATERIALS), n), np.float32)
        self.bright = np.ones(n, np.float32)
        self.shadow = np.zeros(n, np.float32)
        self.label = np.zeros(n, np.uint8)

    def paint(self, idx: np.ndarray, mix: Mapping[int, np.ndarray | float], bright: np.ndarray | float = 1.0,
              label: np.ndarray | int | None = None, cover: np.ndarray | None = None,
              label_cover: float = 0.5) -> None:
        """Set (or, with ``cover`` in [0, 1], blend towards) a material mixture at flat pixel indices ``idx``.

        With ``cover``, the label is set where the cover reaches ``label_cover``.
        """
        if idx.size == 0:
            return
        if cover is None:
            for k in range(len(_MATERIALS)):
                self.abundance[k, idx] = mix.get(k, 0.0)
            self.bright[idx] = bright
            if label is not None:
                self.label[idx] = label
            return
        cover = cover.astype(np.float32, copy=False)
        for k in range(len(_MATERIALS)):
            a = self.abundance[k, idx]
            self.abundance[k, idx] = a + cover * (np.float32(mix.get(k, 0.0)) - a)
        b = self.bright[idx]
        self.bright[idx] = b + cover * (bright - b)
        if label is not None:
            keep = cover >= label_cover
            self.label[idx[keep]] = label[keep] if isinstance(label, np.ndarray) else label


def _veg_label(green: np.ndarray) -> np.ndarray:
    return np.where(green >= 0.6, LandCover.VEGETATION,
                    np.where(green >= 0.2, LandCover.SPARSE_VEGETATION, LandCover.BARE_SOIL)).astype(np.uint8)


def _rest(*fractions: np.ndarray | float) -> np.ndarray:
    total = fractions[0]
    for f in fractions[1:]:
        total = total + f
    return np.clip(np.float32(1) - total, 0, 1).astype(np.float32)


def _crowns(x: np.ndarray, y: np.ndarray, cell: float, jitter: float, radius: tuple[float, float],
            presence: float, key: int, shadow_dir: tuple[float, float], shadow_len: float = 1.1,
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tree crowns on a jittered lattice at points ``(x, y)``: cover, shading and cast-shadow cover."""
    inv = np.float32(1.0 / cell)
    gx, gy = x * inv, y * inv
    ci, cj = np.floor(gx).astype(np.int32), np.floor(gy).astype(np.int32)
    lat = _Lattice(ci, cj, key)
    best = np.zeros(x.size, np.float32)  # crown height (paraboloid, 0 outside)
    cover = np.zeros(x.size, np.float32)
    lit = np.zeros(x.size, np.float32)
    shadow = np.zeros(x.size, np.float32)
    sx, sy = np.float32(shadow_dir[0]), np.float32(shadow_dir[1])
    cellf = np.float32(cell)
    for dj in (-1, 0, 1):
        for di in (-1, 0, 1):
            h = lat.hash[lat.index(ci, cj, di, dj)]
            off = np.float32(0.5 - jitter / 2)
            cx = ((ci + di).astype(np.float32) + off + np.float32(jitter) * _unit(h, 0)) * cellf
            cy = ((cj + dj).astype(np.float32) + off + np.float32(jitter) * _unit(h, 16)) * cellf
            r = (np.float32(radius[0]) + np.float32(radius[1] - radius[0]) * _unit(h, 8)) * cellf
            present = _unit(h, 24) < np.float32(presence)
            dx, dy = x - cx, y - cy
            d2 = dx * dx + dy * dy
            r2 = r * r
            height = np.where(present, np.float32(1) - d2 / r2, np.float32(0))
            edge = np.clip((r2 - d2) / (np.float32(2) * r) + np.float32(0.5), 0, 1)
            take = height > best
            best = np.where(take, height, best)
            cover = np.maximum(cover, np.where(present, edge, np.float32(0)))
            # the sun side of a crown is brighter: the sun lies opposite to the shadows
            lit = np.where(take, -(dx * sx + dy * sy) / r, lit)
            ex, ey = dx - sx * np.float32(shadow_len) * r, dy - sy * np.float32(shadow_len) * r
            cast = np.clip((r2 - ex * ex - ey * ey) / (np.float32(2) * r) + np.float32(0.5), 0, 1)
            shadow = np.maximum(shadow, np.where(present, cast, np.float32(0)))
    shade = np.float32(0.6) + np.float32(0.35) * np.sqrt(np.maximum(best, 0)) + np.float32(0.3) * lit
    return cover, np.clip(shade, 0.3, 1.3).astype(np.float32), shadow * (np.float32(1) - cover)


def _paint_trees(canvas: _Canvas, idx: np.ndarray, x: np.ndarray, y: np.ndarray, white: np.ndarray,
                 lay: _Layout, cell: float, jitter: float, radius: tuple[float, float], presence: float,
                 key: str) -> None:
    if idx.size == 0:
        return
    cover, shade, shadow = _crowns(x, y, cell, jitter, radius, presence, lay.keys[key], lay.shadow_dir)
    inside = cover > 0
    canvas.paint(idx[inside], {TREE: 0.92, VEG: 0.08},
                 bright=shade[inside] * (np.float32(1) + np.float32(0.12) * white[idx[inside]]),
                 label=int(LandCover.TREES), cover=cover[inside])
    cast = shadow > 0
    canvas.shadow[idx[cast]] = np.maximum(canvas.shadow[idx[cast]], np.float32(0.85) * shadow[cast])


_BLOCK = 1 << 15
"""Pixels per block in the per-pixel loops that are worth keeping in cache."""


def _voronoi(u: np.ndarray, v: np.ndarray, key: int, jitter: float = 0.8,
             ) -> tuple[_Lattice, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Nearest and second-nearest jittered lattice point: lattice, both indices, both squared distances."""
    cu, cv = np.floor(u).astype(np.int32), np.floor(v).astype(np.int32)
    lat = _Lattice(cu, cv, key)
    jx = (np.float32(0.5 - jitter / 2) + np.float32(jitter) * _unit(lat.hash, 0)
          + np.float32(jitter / 256) * _unit(lat.hash, 8))
    jy = (np.float32(0.5 - jitter / 2) + np.float32(jitter) * _unit(lat.hash, 16)
          + np.float32(jitter / 256) * _unit(lat.hash, 24))
    # lattice point coordinates per table entry, so that a neighbour costs two gathers
    ti, tj = lat.cell(np.arange(lat.hash.size, dtype=np.int32))
    px, py = ti.astype(np.float32) + jx, tj.astype(np.float32) + jy
    n = u.size
    d1 = np.empty(n, np.float32)
    d2 = np.empty(n, np.float32)
    i1 = np.empty(n, np.int32)
    i2 = np.empty(n, np.int32)
    for s in range(0, n, _BLOCK):
        e = min(n, s + _BLOCK)
        bu, bv, bcu, bcv = u[s:e], v[s:e], cu[s:e], cv[s:e]
        b1 = np.full(e - s, np.inf, np.float32)
        b2 = np.full(e - s, np.inf, np.float32)
        j1 = np.zeros(e - s, np.int32)
        j2 = np.zeros(e - s, np.int32)
        for dj in (-1, 0, 1):
            for di in (-1, 0, 1):
                index = lat.index(bcu, bcv, di, dj)
                du = bu - px[index]
                dv = bv - py[index]
                d = du * du + dv * dv
                closer = d < b1
                second = ~closer & (d < b2)
                b2 = np.where(closer, b1, np.where(second, d, b2))
                j2 = np.where(closer, j1, np.where(second, index, j2))
                b1 = np.where(closer, d, b1)
                j1 = np.where(closer, index, j1)
        d1[s:e], d2[s:e], i1[s:e], i2[s:e] = b1, b2, j1, j2
    return lat, i1, i2, d1, d2


def _render(lay: _Layout, y0: int, y1: int) -> tuple[_Canvas, int]:
    """Paint rows ``y0:y1`` of the scene; returns the canvas (flat, row-major) and the width."""
    size = lay.size
    w = size
    n = (y1 - y0) * w
    rows = slice(y0, y1)
    xs = np.arange(size, dtype=np.float32) + np.float32(0.5)
    ys = np.arange(y0, y1, dtype=np.float32) + np.float32(0.5)
    X, Y = xs[None, :], ys[:, None]
    keys = lay.keys
    canvas = _Canvas(n)

    def coords(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return xs[idx % w], ys[idx // w]

    fine, mid, coarse, macro = (_smooth_noise(xs, ys, c, keys[k]).ravel() for c, k in zip(
        lay.noise_cells, ("noise_fine", "noise_mid", "noise_coarse", "noise_macro"), strict=True))
    white = _signed(_hash2(np.arange(size)[None, :], np.arange(y0, y1)[:, None], keys["white"])).ravel()

    # -- parcels: Voronoi cells of a jittered lattice in a rotated, stretched frame --------------------------
    ct, st = np.float32(lay.cos_t), np.float32(lay.sin_t)
    fu = np.float32(1.0 / lay.field_cell)
    fv = np.float32(1.0 / (lay.field_cell * lay.aspect))
    lat, i1, i2, d1, d2 = _voronoi(((X * ct + Y * st) * fu).ravel(), ((Y * ct - X * st) * fv).ravel(),
                                   keys["parcels"])
    ph = _mix32(lat.hash ^ np.uint32(keys["parcel_params"]))
    ptype_tab = np.searchsorted(np.cumsum(_PARCEL_PROBS), _unit(ph), side="right").clip(0, len(_Parcel) - 1)
    vigor_tab = np.float32(0.8) + np.float32(0.2) * _unit(ph, 0)
    period_tab = np.float32(5.0) + np.float32(6.0) * _unit(ph, 16)
    dir_tab = (ph >> np.uint32(24)) % np.uint32(_N_DIRECTIONS)
    bright_tab = np.float32(0.9) + np.float32(0.2) * _unit(_mix32(ph), 8)
    ptype = ptype_tab[i1]
    gap = (np.sqrt(d2) - np.sqrt(d1)) * np.float32(0.5 * lay.field_cell * math.sqrt(lay.aspect))
    del d1, d2

    for kind in _Parcel:
        idx = np.flatnonzero(ptype == kind)
        if idx.size == 0:
            continue
        pi = i1[idx]
        vig, bright = vigor_tab[pi], bright_tab[pi]
        x, y = coords(idx)
        d = dir_tab[pi]
        t = x * lay.dir_cos[d] + y * lay.dir_sin[d]
        period = period_tab[pi]
        f, m, c, wn = fine[idx], mid[idx], coarse[idx], white[idx]
        if kind == _Parcel.CEREAL:
            row = _stripes(t, period)
            tram = _frac(t / (period * np.float32(12))) < np.float32(1.8) / (period * np.float32(12))
            green = np.clip(vig * (0.9 - 0.25 * (m - 0.5) - 0.2 * (c - 0.5)), 0, 1) * (0.92 + 0.08 * row)
            green = np.where(tram, green * np.float32(0.3), green).astype(np.float32)
            canvas.paint(idx, {VEG: green, DRY: 0.04, SOIL: _rest(green, 0.04)},
                         bright=bright * (0.96 + 0.08 * row + 0.04 * wn), label=_veg_label(green))
        elif kind == _Parcel.RIPENING:
            row = _stripes(t, period)
            green = (0.3 + 0.2 * m).astype(np.float32)
            dry = np.float32(0.5)
            canvas.paint(idx, {VEG: green, DRY: dry, SOIL: _rest(green, dry)},
                         bright=bright * (0.97 + 0.06 * row + 0.04 * wn), label=_veg_label(green))
        elif kind == _Parcel.ROWCROP:
            row = _stripes(t, period)
            green = (vig * np.clip((row - 0.3) * 1.6, 0, 1) * (0.85 + 0.3 * (m - 0.5))).astype(np.float32)
            wet = ((0.3 + 0.4 * c) * (1 - green)).astype(np.float32)
            canvas.paint(idx, {VEG: green, WSOIL: wet, SOIL: _rest(green, wet)},
                         bright=bright * (1 + 0.03 * wn), label=_veg_label(green))
        elif kind == _Parcel.PLOUGHED:
            row = _stripes(t, period * np.float32(0.7))
            wet = np.clip(0.25 + 0.5 * m + 0.2 * (1 - row), 0, 1).astype(np.float32)
            green = (0.03 * f).astype(np.float32)
            canvas.paint(idx, {WSOIL: wet, VEG: green, SOIL: _rest(wet, green)},
                         bright=bright * (0.85 + 0.2 * row + 0.05 * wn), label=int(LandCover.BARE_SOIL))
        elif kind == _Parcel.GRASS:
            green = (np.clip(0.75 + 0.25 * (m - 0.5) + 0.2 * (f - 0.5), 0, 1) * vig).astype(np.float32)
            dry = (0.12 * (1 - c)).astype(np.float32)
            canvas.paint(idx, {VEG: green, DRY: dry, SOIL: _rest(green, dry)},
                         bright=bright * (0.95 + 0.1 * f + 0.05 * wn), label=_veg_label(green))
        elif kind == _Parcel.FALLOW:
            green = (0.1 + 0.25 * f * m).astype(np.float32)
            dry = (0.3 * c).astype(np.float32)
            wet = (0.2 * m).astype(np.float32)
            canvas.paint(idx, {VEG: green, DRY: dry, WSOIL: wet, SOIL: _rest(green, dry, wet)},
                         bright=bright * (1 + 0.06 * wn), label=_veg_label(green))
        elif kind == _Parcel.FOREST:
            canvas.paint(idx, {TREE: 0.6, WSOIL: 0.2, DRY: 0.2}, bright=0.45 * (1 + 0.1 * wn),
                         label=int(LandCover.TREES))
        elif kind == _Parcel.ORCHARD:
            green = (0.5 + 0.2 * (m - 0.5)).astype(np.float32)
            canvas.paint(idx, {VEG: green, DRY: 0.1, SOIL: _rest(green, 0.1)},
                         bright=bright * (1 + 0.05 * wn), label=_veg_label(green))
        else:  # URBAN ground: gardens and paved yards
            garden = mid[idx] + 0.3 * (_unit(_hash2(x.astype(np.int64) // 24, y.astype(np.int64) // 24,
                                                    keys["urban_ground"])) - 0.5) > 0.5
            green = np.where(garden, 0.75 * vig, 0.05).astype(np.float32)
            paved = np.where(garden, 0.0, 0.45).astype(np.float32)
            tar = np.where(garden, 0.0, 0.25).astype(np.float32)
            canvas.paint(idx, {VEG: green, CONCRETE: paved, ASPHALT: tar, SOIL: _rest(green, paved, tar)},
                         bright=np.where(garden, 1.0, 0.85) + 0.05 * wn,
                         label=np.where(garden, _veg_label(green), np.uint8(LandCover.PAVED)))


    # -- parcel margins: grassy strips between fields, none inside a forest or a village ---------------------
    ptype2 = ptype_tab[i2]
    same_block = (ptype == ptype2) & ((ptype == _Parcel.FOREST) | (ptype == _Parcel.URBAN))
    idx = np.flatnonzero((gap < 2.5) & ~same_block)
    green = (0.45 + 0.2 * mid[idx]).astype(np.float32)
    canvas.paint(idx, {VEG: green, DRY: 0.25, SOIL: _rest(green, 0.25)}, bright=1 + 0.06 * white[idx],
                 label=_veg_label(green), cover=np.clip(2.5 - gap[idx], 0, 1))
    del gap, ptype2, same_block, i2

    # -- trees -----------------------------------------------------------------------------------------------
    cell = lay.tree_cell
    idx = np.flatnonzero(ptype == _Parcel.FOREST)
    _paint_trees(canvas, idx, *coords(idx), white, lay, cell, 0.7, (0.5, 0.75), 0.93, "forest")
    idx = np.flatnonzero(ptype == _Parcel.ORCHARD)
    _paint_trees(canvas, idx, *coords(idx), white, lay, 1.6 * cell, 0.08, (0.26, 0.34), 0.95, "orchard")

    # -- village: streets, buildings with shadows, garden trees ----------------------------------------------
    idx = np.flatnonzero(ptype == _Parcel.URBAN)
    if idx.size:
        _paint_village(canvas, idx, *coords(idx), white, fine, lay)
    del ptype, i1

    # -- water: a river and a lake, wet banks, trees along the river -----------------------------------------
    river_gap = lay.river.distance(X, Y, rows) - lay.river.half_width_at(X, Y, rows)
    cx, cy, ra, rb, lc, ls = (np.float32(v) for v in lay.lake)
    lu, lv = (X - cx) * lc + (Y - cy) * ls, (Y - cy) * lc - (X - cx) * ls
    rho = np.sqrt((lu / ra) ** 2 + (lv / rb) ** 2)
    lake_gap = (rho - 1) * rb - np.float32(0.3) * rb * (coarse.reshape(rho.shape) - np.float32(0.5))
    water_gap = np.minimum(river_gap, lake_gap).ravel()
    del lu, lv, rho, lake_gap
    idx = np.flatnonzero(water_gap < 2.5)
    canvas.paint(idx, {SOIL: 0.5, WSOIL: 0.5}, bright=1 + 0.05 * white[idx], label=int(LandCover.BARE_SOIL),
                 cover=np.clip(2.5 - water_gap[idx], 0, 1))
    idx = np.flatnonzero(water_gap < 0.5)
    wg = water_gap[idx]
    turbid = (0.1 + 0.5 * coarse[idx]).astype(np.float32)
    shallow = (0.08 * np.clip(1 + wg / 3, 0, 1)).astype(np.float32)
    canvas.paint(idx, {TURBID: turbid, SOIL: shallow, WATER: _rest(turbid, shallow)},
                 bright=1 + 0.06 * (fine[idx] - 0.5), label=int(LandCover.WATER),
                 cover=np.clip(0.5 - wg, 0, 1), label_cover=0.9)
    canvas.shadow[idx] *= np.clip(wg + 0.5, 0, 1)  # shadows of trees and houses that the water replaced
    idx = np.flatnonzero((water_gap > 1.5) & (river_gap.ravel() < lay.tree_cell * 2.5)
                         & (canvas.label != LandCover.BUILDING))
    _paint_trees(canvas, idx, *coords(idx), white, lay, cell, 0.6, (0.45, 0.7), 0.6, "riparian")
    del water_gap, river_gap

    # -- roads (over water: bridges) -------------------------------------------------------------------------
    for line in lay.lines:
        dist = (X * np.float32(line.nx) + Y * np.float32(line.ny) - np.float32(line.c)).ravel()
        idx = np.flatnonzero(np.abs(dist) < line.width / 2 + 1.5)
        if idx.size == 0:
            continue
        x, y = coords(idx)
        _paint_road(canvas, idx, dist[idx], x * np.float32(line.tx) + y * np.float32(line.ty), line.width,
                    line.markings, line.key if line.cars else None, fine, white)
    road = lay.curve_road
    dist = road.distance(X, Y, rows).ravel()
    idx = np.flatnonzero(dist < lay.curve_road_width / 2 + 1.5)
    _paint_road(canvas, idx, dist[idx], coords(idx)[1 if road.vertical else 0], lay.curve_road_width, False,
                None, fine, white)

    # -- final touches ---------------------------------------------------------------------------------------
    canvas.bright *= np.float32(1) + np.float32(0.08) * (macro - np.float32(0.5))
    ground = (LandCover.VEGETATION, LandCover.SPARSE_VEGETATION, LandCover.BARE_SOIL, LandCover.PAVED,
              LandCover.ROAD, LandCover.TREES)
    shaded = (canvas.shadow >= 0.5) & np.isin(canvas.label, ground)
    canvas.label[shaded] = LandCover.SHADOW
    return canvas, w


def _paint_road(canvas: _Canvas, idx: np.ndarray, d: np.ndarray, t: np.ndarray, width: float, markings: bool,
                cars_key: int | None, fine: np.ndarray, white: np.ndarray) -> None:
    """Asphalt (with gravel shoulders, markings and cars) at pixels ``idx``, ``d`` across and ``t`` along."""
    if idx.size == 0:
        return
    half = np.float32(width / 2)
    ad = np.abs(d)
    canvas.paint(idx, {SOIL: 0.45, ASPHALT: 0.3, DRY: 0.25}, bright=1 + 0.05 * white[idx],
                 label=int(LandCover.BARE_SOIL), cover=np.clip(half + 1.5 - ad, 0, 1))
    on = ad < half + 0.5
    idx, d, ad, t = idx[on], d[on], ad[on], t[on]
    cover = np.clip(half + 0.5 - ad, 0, 1)
    canvas.paint(idx, {ASPHALT: 0.95, SOIL: 0.05}, bright=0.92 + 0.1 * fine[idx] + 0.04 * white[idx],
                 label=int(LandCover.ROAD), cover=cover)
    canvas.shadow[idx] *= np.float32(1) - cover  # shadows of the trees the road replaced
    if markings:
        dash = _frac(t / np.float32(2 * width)) < 0.35
        centre = np.clip(0.8 - ad, 0, 1) * dash
        edge = np.clip(0.7 - np.abs(ad - (half - 1.2)), 0, 1)
        paint = np.maximum(centre, edge).astype(np.float32)
        sel = paint > 0
        canvas.paint(idx[sel], {PAINT: 0.85, ASPHALT: 0.15}, label=int(LandCover.ROAD), cover=paint[sel])
    if cars_key is not None:
        spacing, length, breadth = np.float32(1.6 * width), np.float32(max(5.0, 0.6 * width)), 0.27 * width
        k = np.floor(t / spacing)
        h = _hash2(k.astype(np.int64), (d > 0).astype(np.int64), cars_key)
        along = t - k * spacing - _unit(h, 8) * (spacing - length)
        across = np.abs(ad - np.float32(width / 4))
        cover = (np.clip(np.minimum(along, length - along) + 0.5, 0, 1)
                 * np.clip(np.float32(breadth / 2) - across + 0.5, 0, 1) * (_unit(h, 0) < 0.3))
        colour = _unit(h, 16)
        paints = ((0.0, 0.3, {PAINT: 0.9, DARKROOF: 0.1}, 1.0), (0.3, 0.55, {DARKROOF: 1.0}, 0.45),
                  (0.55, 0.7, {TILES: 1.0}, 0.9), (0.7, 0.9, {METAL: 1.0}, 1.0),
                  (0.9, 1.0, {WATER: 1.0}, 3.0))  # white, black, red, silver and blue cars
        for lo, hi, mix, bright in paints:
            sel = (cover > 0) & (colour >= lo) & (colour < hi)
            canvas.paint(idx[sel], mix, bright=bright, label=int(LandCover.ROAD), cover=cover[sel])

def _paint_village(canvas: _Canvas, idx: np.ndarray, x: np.ndarray, y: np.ndarray, white: np.ndarray,
                   fine: np.ndarray, lay: _Layout) -> None:
    """Streets, houses (flat concrete or metal roofs, gabled tile or dark roofs) and their shadows."""
    ct, st = np.float32(lay.cos_t), np.float32(lay.sin_t)
    size = np.float32(lay.building_cell)
    u, v = x * ct + y * st, y * ct - x * st
    ci, cj = np.floor(u / size).astype(np.int32), np.floor(v / size).astype(np.int32)
    lu, lv = u - ci.astype(np.float32) * size, v - cj.astype(np.float32) * size
    lat = _Lattice(ci, cj, lay.keys["buildings"])

    # per lattice cell: one house, its footprint and its shadow kept inside the cell
    tci, tcj = lat.cell(np.arange(lat.hash.size))
    h, h2 = lat.hash, _mix32(lat.hash)
    sx, sy = lay.shadow_dir
    su_dir, sv_dir = sx * lay.cos_t + sy * lay.sin_t, sy * lay.cos_t - sx * lay.sin_t
    su_dir = su_dir if abs(su_dir) > 1e-3 else 1e-3
    sv_dir = sv_dir if abs(sv_dir) > 1e-3 else 1e-3
    length = np.float32(2) + np.float32(0.22) * size * _unit(h2, 0)  # shadow length ~ building height
    su, sv = length * np.float32(su_dir), length * np.float32(sv_dir)
    avail_u, avail_v = size - 2 - np.abs(su), size - 2 - np.abs(sv)
    wu, wv = (0.5 + 0.4 * _unit(h, 0)) * avail_u, (0.5 + 0.4 * _unit(h, 16)) * avail_v
    u0 = 1 + np.maximum(0, -su) + _unit(h, 8) * (avail_u - wu)
    v0 = 1 + np.maximum(0, -sv) + _unit(h, 24) * (avail_v - wv)
    street_u, street_v = tci % 4 == 0, tcj % 3 == 0
    present = (_unit(h2, 8) < 0.85) & ~street_u & ~street_v
    # no house in the river, the lake or on a road: test the footprint's centre with its half-diagonal
    uc = tci.astype(np.float64) * size + u0 + wu / 2
    vc = tcj.astype(np.float64) * size + v0 + wv / 2
    bx, by = uc * lay.cos_t - vc * lay.sin_t, uc * lay.sin_t + vc * lay.cos_t
    reach = 0.5 * np.sqrt(wu.astype(np.float64) ** 2 + wv**2) + length + 2
    clear = lay.river.distance(bx, by) - lay.river.half_width_at(bx, by) > reach
    cx, cy, ra, rb, lc, ls = lay.lake
    lake_u, lake_v = (bx - cx) * lc + (by - cy) * ls, (by - cy) * lc - (bx - cx) * ls
    clear &= (np.sqrt((lake_u / ra) ** 2 + (lake_v / rb) ** 2) - 1) * rb > reach + 0.2 * rb
    for line in lay.lines:
        clear &= np.abs(bx * line.nx + by * line.ny - line.c) > reach + line.width / 2 + 2
    clear &= lay.curve_road.distance(bx, by) > reach + lay.curve_road_width / 2 + 2
    present &= clear
    roof = _unit(h2, 16)

    k = lat.index(ci, cj, 0, 0)
    street = (street_u[k] & (lu < 0.45 * size)) | (street_v[k] & (lv < 0.45 * size))
    sel = np.flatnonzero(street)
    canvas.paint(idx[sel], {ASPHALT: 0.9, SOIL: 0.1}, bright=0.95 + 0.1 * fine[idx[sel]],
                 label=int(LandCover.ROAD))

    pu0, pv0, pwu, pwv, ps = u0[k], v0[k], wu[k], wv[k], present[k]
    eu = np.minimum(lu - pu0, pu0 + pwu - lu)  # distance inside the footprint's edges (negative outside)
    ev = np.minimum(lv - pv0, pv0 + pwv - lv)
    cover = (np.clip(eu + 0.5, 0, 1) * np.clip(ev + 0.5, 0, 1) * ps).astype(np.float32)

    # cast shadow: the footprint swept along the shadow vector (exact for a box)
    psu, psv = su[k], sv[k]
    ta, tb = (lu - (pu0 + pwu)) / psu, (lu - pu0) / psu
    lo, hi = np.minimum(ta, tb), np.maximum(ta, tb)
    ta, tb = (lv - (pv0 + pwv)) / psv, (lv - pv0) / psv
    lo = np.maximum(np.maximum(lo, np.minimum(ta, tb)), 0)
    hi = np.minimum(np.minimum(hi, np.maximum(ta, tb)), 1)
    cast = ps & (lo <= hi) & (cover < 1)
    canvas.shadow[idx[cast]] = np.maximum(canvas.shadow[idx[cast]], np.float32(0.9) * (1 - cover[cast]))

    # roofs: gabled ones are split along the ridge (longer side) into a sunlit and a shaded half
    kind = roof[k]
    ridge_u = pwu >= pwv
    lower_half = np.where(ridge_u, lv < pv0 + pwv / 2, lu < pu0 + pwu / 2)
    # the lower half's outward normal is -v (-u); it faces the sun if the shadows fall towards +v (+u)
    sunlit = lower_half == np.where(ridge_u, sv_dir > 0, su_dir > 0)
    gable = np.where(sunlit, np.float32(1.15), np.float32(0.75))
    edge = np.minimum(eu, ev)
    flat = np.where(edge < 1.2, np.float32(0.8), np.float32(1.0)) + 0.03 * white[idx]
    metal = np.float32(0.9) + np.float32(0.15) * _stripes(lu, np.float32(2.5))
    roofs = ((0.0, 0.35, {CONCRETE: 0.9, DARKROOF: 0.1}, flat),
             (0.35, 0.65, {TILES: 0.92, DARKROOF: 0.08}, gable), (0.65, 0.8, {DARKROOF: 1.0}, gable),
             (0.8, 1.0, {METAL: 0.9, CONCRETE: 0.1}, metal))
    for lo_, hi_, mix, bright in roofs:
        sel = np.flatnonzero((cover > 0) & (kind >= lo_) & (kind < hi_))
        canvas.paint(idx[sel], mix, bright=bright[sel], label=int(LandCover.BUILDING), cover=cover[sel])

    # a few garden trees
    sel = np.flatnonzero((cover == 0) & ~street)
    _paint_trees(canvas, idx[sel], x[sel], y[sel], white, lay, 1.3 * lay.tree_cell, 0.8, (0.3, 0.5), 0.25,
                 "garden")


# ------------------------------------------------------------------------------------------------------------
# products


def _band_key(lay: _Layout, band: int) -> int:
    return int(_mix32(np.array([lay.keys["bands"] ^ (band * 0x9E3779B1 & 0xFFFFFFFF)], np.uint32))[0])


def _render_reference(lay: _Layout, profile: SensorProfile, y0: int, y1: int,
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Reference DN ``(C, y1 - y0, size)`` float32 and land-cover labels of rows ``y0:y1``."""
    canvas, w = _render(lay, y0, y1)
    emat, shade, haze = _band_tables(profile)
    bands = len(profile.bands)
    out = np.empty((bands, canvas.abundance.shape[1]), np.float32)
    _mix_bands(canvas, w, y0, emat, shade, haze, [_band_key(lay, b) for b in range(bands)], out,
               gain=np.float32(REFLECTANCE_SCALE * profile.max_value))
    return out.reshape(bands, y1 - y0, w), canvas.label.reshape(y1 - y0, w)


def _mix_bands(canvas: _Canvas, w: int, y0: int, emat: np.ndarray, shade: np.ndarray, haze: np.ndarray,
               keys: list[int], out: np.ndarray, gain: np.float32 | None = None, start: int = 0,
               stop: int | None = None, active: list[int] | None = None) -> None:
    """Each band of the canvas's pixels ``start:stop`` into ``out`` (bands, pixels): reflectance, or with ``gain``
    DN = 1 + reflectance * gain.

    Reflectance = (abundance-weighted endmembers * brightness * shadow factor + haze) * (1 + band noise), clipped
    to [0, 1]. Every pixel is computed on its own, in a fixed order, so any split into strips or pixel ranges gives
    bit-identical values.
    """
    abundance = canvas.abundance
    if active is None:
        active = [k for k in range(len(_MATERIALS)) if abundance[k].any()]
    stop = abundance.shape[1] if stop is None else stop
    tmp = np.empty(_BLOCK, np.float32)
    dark = np.empty(_BLOCK, np.float32)
    for s in range(start, stop, _BLOCK):  # blocks that stay in cache; every operation is elementwise
        e = min(stop, s + _BLOCK)
        t, sh = tmp[:e - s], dark[:e - s]
        flat = np.arange(s, e)
        ix, iy = flat % w, flat // w + y0
        for b in range(len(keys)):
            acc = out[b, s:e]
            acc.fill(0)
            for k in active:  # an explicit, fixed-order sum: bit-identical whatever the strip's size
                np.multiply(abundance[k, s:e], emat[b, k], out=t)
                acc += t
            acc *= canvas.bright[s:e]
            np.multiply(canvas.shadow[s:e], np.float32(1) - shade[b], out=sh)
            np.subtract(np.float32(1), sh, out=sh)
            acc *= sh
            acc += haze[b]
            acc *= np.float32(1) + np.float32(BAND_NOISE) * _signed(_hash2(ix, iy, keys[b]))
            np.clip(acc, 0, 1, out=acc)
            if gain is not None:
                acc *= gain
                acc += np.float32(1)


def _pan_from_reference(ref: np.ndarray, profile: SensorProfile, lay: _Layout, y0: int) -> np.ndarray:
    weights = _pan_weights(profile)
    pan = np.zeros(ref.shape[1:], np.float32)
    for b in range(ref.shape[0]):
        pan += weights[b] * ref[b]
    noise = _signed(_hash2(np.arange(ref.shape[2])[None, :], np.arange(y0, y0 + ref.shape[1])[:, None],
                           lay.keys["pan"]))
    pan += np.float32(PAN_NOISE * profile.max_value) * noise
    return np.clip(pan, 1, profile.max_value, out=pan)


@dataclass
class SceneStrip:
    """PAN rows ``row0:row1`` of a scene, with the matching MS rows ``row0 // ratio:row1 // ratio``."""

    row0: int
    row1: int
    pan: np.ndarray  # (row1 - row0, W) float32
    ms: np.ndarray  # (C, (row1 - row0) / ratio, W / ratio) float32
    reference: np.ndarray  # (C, row1 - row0, W) float32
    labels: np.ndarray  # (row1 - row0, W) uint8, LandCover codes


@dataclass
class SyntheticScene:
    """A synthetic acquisition: PAN, MS, the high-resolution reference MS, and their georeferencing."""

    pan: np.ndarray  # (H, W) float32 DN
    ms: np.ndarray  # (C, H / ratio, W / ratio) float32 DN
    reference: np.ndarray  # (C, H, W) float32 DN: the MS a sensor with PAN resolution would have seen
    crs: str
    pan_transform: Affine
    ms_transform: Affine
    sensor: str  # sensor key, e.g. "wv3"
    labels: np.ndarray | None = None  # (H, W) uint8 LandCover codes
    seed: int | None = None
    profile: SensorProfile | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.profile is None:
            self.profile = get_sensor(self.sensor)

    @property
    def ratio(self) -> int:
        return round(self.pan.shape[-1] / self.ms.shape[-1])

    @property
    def band_names(self) -> tuple[str, ...]:
        assert self.profile is not None
        return self.profile.band_names


def _profile(sensor: str | SensorProfile) -> SensorProfile:
    return sensor if isinstance(sensor, SensorProfile) else get_sensor(sensor)


def _ratio(profile: SensorProfile) -> int:
    r = float(profile.ratio)
    if r < 1 or r != int(r):
        raise ValueError(f"sensor {profile.key!r} has a non-integer ratio {profile.ratio}")
    return int(r)


def _check_size(size: int, ratio: int) -> int:
    if isinstance(size, bool) or int(size) != size:
        raise SampleSizeError(f"--size {size!r}: the size is a whole number of PAN pixels", hint="e.g. --size 512")
    size = int(size)
    if size < 4 * ratio or size % ratio:
        nearest = max(4 * ratio, round(size / ratio) * ratio)
        raise SampleSizeError(f"--size {size}: the PAN side must be a multiple of the sensor's ratio {ratio} and at "
                              f"least {4 * ratio} px", hint=f"e.g. --size {nearest}")
    return size


class SampleSizeError(SpatialxError, ValueError):
    """A sample size that does not fit the sensor's grids (a user mistake: one line, exit 2)."""


def default_strip_rows(size: int, ratio: int = 4) -> int:
    """Strip height used when none is given: about :data:`STRIP_PIXELS` pixels, a multiple of ``ratio``."""
    return int(min(size, max(ratio, (STRIP_PIXELS // size) // ratio * ratio)))


def _strip_rows(strip_rows: int | None, size: int, ratio: int) -> int:
    if strip_rows is None:
        return default_strip_rows(size, ratio)
    if isinstance(strip_rows, bool) or int(strip_rows) != strip_rows or strip_rows <= 0 or strip_rows % ratio:
        raise ValueError(f"strip_rows must be a positive multiple of the ratio {ratio}, got {strip_rows!r}")
    return int(min(strip_rows, size))


_LAYOUTS: dict[tuple[int, int], _Layout] = {}


def _layout(size: int, seed: int) -> _Layout:
    key = (size, seed)
    if key not in _LAYOUTS:
        if len(_LAYOUTS) >= 8:
            _LAYOUTS.pop(next(iter(_LAYOUTS)))
        _LAYOUTS[key] = _make_layout(size, seed)
    return _LAYOUTS[key]


def iter_strips(sensor: str | SensorProfile = "wv3", size: int = 512, seed: int = 0,
                strip_rows: int | None = None) -> Iterator[SceneStrip]:
    """Generate a scene strip by strip (top to bottom), each from scratch: memory is bounded by a strip.

    ``strip_rows`` (a multiple of the ratio; default :func:`default_strip_rows`) is the PAN height of a strip.
    Each strip is rendered with :data:`FILTER_MARGIN` extra rows above and below so that the MTF filter sees
    what it sees on the whole scene, and starts on a multiple of the ratio so that decimation keeps the same
    rows; strips are therefore the exact pieces of :func:`generate_scene`'s arrays (the MS to float32
    rounding).
    """
    profile = _profile(sensor)
    ratio = _ratio(profile)
    size = _check_size(size, ratio)
    rows = _strip_rows(strip_rows, size, ratio)
    margin = ratio * math.ceil(max(FILTER_MARGIN, DEFAULT_TAPS // 2) / ratio)
    lay = _layout(size, int(seed))
    gains = profile.mtf_gains
    for y0 in range(0, size, rows):
        y1 = min(size, y0 + rows)
        e0, e1 = max(0, y0 - margin), min(size, y1 + margin)
        ref_ext, labels = _render_reference(lay, profile, e0, e1)
        # one band at a time: the filter works in float64, and this keeps its copies small
        ms = np.stack([decimate_centred(mtf_filter(ref_ext[b], gains[b], ratio), ratio)[
                           (y0 - e0) // ratio:(y1 - e0) // ratio]
                       for b in range(ref_ext.shape[0])]).astype(np.float32, copy=False)
        ref = np.ascontiguousarray(ref_ext[:, y0 - e0:y1 - e0])
        del ref_ext
        yield SceneStrip(row0=y0, row1=y1, pan=_pan_from_reference(ref, profile, lay, y0), ms=ms,
                         reference=ref, labels=np.ascontiguousarray(labels[y0 - e0:y1 - e0]))


def gsd_pan_m(sensor: str | SensorProfile) -> float:
    """PAN pixel size in metres used for a sensor's synthetic scenes."""
    return GSD_PAN_M.get(_profile(sensor).key, DEFAULT_GSD_PAN_M)


def _transforms(profile: SensorProfile, origin: tuple[float, float], gsd: float | None,
                ) -> tuple[Affine, Affine]:
    gsd = gsd_pan_m(profile) if gsd is None else float(gsd)
    ratio = _ratio(profile)
    x0, y0 = origin
    return Affine(gsd, 0.0, x0, 0.0, -gsd, y0), Affine(gsd * ratio, 0.0, x0, 0.0, -gsd * ratio, y0)


def generate_scene(sensor: str | SensorProfile = "wv3", size: int = 512, seed: int = 0,
                   crs: str = DEFAULT_CRS, strip_rows: int | None = None,
                   origin: tuple[float, float] = DEFAULT_ORIGIN, gsd: float | None = None) -> SyntheticScene:
    """A synthetic scene of ``size`` x ``size`` PAN pixels (a multiple of the sensor's ratio), in memory.

    The same ``(sensor, size, seed)`` always gives bit-identical arrays. The work is done in strips of
    ``strip_rows`` rows (see :func:`iter_strips`), so the peak memory is the output arrays plus one strip; for
    scenes that do not fit in memory use :func:`write_sample`. ``gsd`` (PAN pixel, metres) defaults to
    :data:`GSD_PAN_M`; the PAN and MS grids share the upper-left corner ``origin`` in ``crs``.
    """
    profile = _profile(sensor)
    ratio = _ratio(profile)
    size = _check_size(size, ratio)
    bands = len(profile.bands)
    pan = np.empty((size, size), np.float32)
    ms = np.empty((bands, size // ratio, size // ratio), np.float32)
    reference = np.empty((bands, size, size), np.float32)
    labels = np.empty((size, size), np.uint8)
    for strip in iter_strips(profile, size, seed, strip_rows):
        pan[strip.row0:strip.row1] = strip.pan
        ms[:, strip.row0 // ratio:strip.row1 // ratio] = strip.ms
        reference[:, strip.row0:strip.row1] = strip.reference
        labels[strip.row0:strip.row1] = strip.labels
    pan_transform, ms_transform = _transforms(profile, origin, gsd)
    return SyntheticScene(pan=pan, ms=ms, reference=reference, crs=str(crs), pan_transform=pan_transform,
                          ms_transform=ms_transform, sensor=profile.key, labels=labels, seed=int(seed),
                          profile=profile)


# ------------------------------------------------------------------------------------------------------------
# files


class _RowWriter:
    """Writes row strips into a dataset in whole multiples of its block height: each tile written once."""

    def __init__(self, dst, block_rows: int):
        self.dst, self.block_rows = dst, block_rows
        self.row = 0
        self.pending: list[np.ndarray] = []

    def add(self, data: np.ndarray) -> None:
        self.pending.append(data)
        if sum(p.shape[1] for p in self.pending) >= self.block_rows:
            self._flush(final=False)

    def close(self) -> None:
        if self.pending:
            self._flush(final=True)

    def _flush(self, final: bool) -> None:
        from rasterio.windows import Window

        data = self.pending[0] if len(self.pending) == 1 else np.concatenate(self.pending, axis=1)
        n = data.shape[1] if final else data.shape[1] // self.block_rows * self.block_rows
        if n:
            self.dst.write(data[:, :n], window=Window(0, self.row, data.shape[2], n))
            self.row += n
        self.pending = [data[:, n:]] if n < data.shape[1] else []


def _encode(data: np.ndarray, profile: SensorProfile) -> np.ndarray:
    """DN float32 to the sensor's dtype: integers rounded and clipped to [1, max_value] (0 is nodata)."""
    dtype = np.dtype(profile.dtype)
    if np.issubdtype(dtype, np.integer):
        return np.clip(np.rint(data), 1, profile.max_value).astype(dtype)
    return data.astype(dtype)


def write_sample(out_dir: str | PathLike[str], sensor: str | SensorProfile = "wv3", size: int = 1024,
                 seed: int = 0, overwrite: bool = False, strip_rows: int | None = None,
                 crs: str = DEFAULT_CRS, labels: bool = False) -> dict[str, Path]:
    """Write ``pan.tif``, ``ms.tif`` and ``reference.tif`` (and ``labels.tif`` if asked) into ``out_dir``.

    Tiled (256 x 256), deflate-compressed GeoTIFFs in the sensor's dtype with its nodata, band names as band
    descriptions and ``wavelength`` / ``wavelength_units`` / ``fwhm`` band tags. The scene is generated and
    written strip by strip (see :func:`iter_strips`), so any size fits in memory. Existing files are refused
    unless ``overwrite``; files are written under temporary names and renamed at the end. Returns the paths by
    role: ``{"pan": ..., "ms": ..., "reference": ...}``.
    """
    import rasterio

    profile = _profile(sensor)
    ratio = _ratio(profile)
    size = _check_size(size, ratio)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError("not a directory", path=out, hint="give a directory to write the scene into")
    paths = {"pan": out / "pan.tif", "ms": out / "ms.tif", "reference": out / "reference.tif"}
    if labels:
        paths["labels"] = out / "labels.tif"
    for path in paths.values():
        if path.exists() and not overwrite:
            raise OutputError("output exists", path=path, hint="pass --overwrite")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output directory: {exc.strerror}", path=out) from None

    pan_transform, ms_transform = _transforms(profile, DEFAULT_ORIGIN, None)
    pan_band = profile.pan
    specs = {
        "pan": (size, pan_transform, [("PAN", pan_band.center_nm, pan_band.width_nm)], profile.dtype),
        "ms": (size // ratio, ms_transform, [(b.name, b.center_nm, b.width_nm) for b in profile.bands],
               profile.dtype),
        "reference": (size, pan_transform, [(b.name, b.center_nm, b.width_nm) for b in profile.bands],
                      profile.dtype),
        "labels": (size, pan_transform, [("land_cover", None, None)], "uint8"),
    }
    block = 256
    from spatialx.io.outputs import discard, new_temporary, publish

    temps = {role: new_temporary(path, ".tif") for role, path in paths.items()}
    datasets = {}
    try:
        with rasterio.Env(GDAL_CACHEMAX=256 * 1024 * 1024):
            for role, tmp in temps.items():
                side, transform, bands, dtype = specs[role]
                integer = np.issubdtype(np.dtype(dtype), np.integer)
                dst = rasterio.open(
                    tmp, "w", driver="GTiff", width=side, height=side, count=len(bands), dtype=dtype, crs=crs,
                    transform=transform, nodata=None if role == "labels" else profile.nodata, tiled=True,
                    blockxsize=block, blockysize=block, compress="deflate", predictor=2 if integer else 3,
                    zlevel=1, num_threads="ALL_CPUS", BIGTIFF="IF_SAFER")
                datasets[role] = dst
                dst.descriptions = tuple(name for name, _, _ in bands)
                for i, (_, center, width) in enumerate(bands, start=1):
                    if center is not None:
                        dst.update_tags(i, wavelength=center, wavelength_units="nm", fwhm=width)
                dst.update_tags(sensor=profile.key, seed=int(seed), ratio=ratio, generator="spatialx.sample")
                if role == "labels":
                    dst.update_tags(classes=",".join(f"{c.value}={c.name.lower()}" for c in LandCover))
            writers = {role: _RowWriter(dst, block) for role, dst in datasets.items()}

            def write(strip: SceneStrip) -> None:
                writers["pan"].add(_encode(strip.pan[None], profile))
                writers["ms"].add(_encode(strip.ms, profile))
                writers["reference"].add(_encode(strip.reference, profile))
                if labels:
                    writers["labels"].add(strip.labels[None])

            # GDAL compresses while the next strip is generated; at most one strip waits to be written
            with ThreadPoolExecutor(max_workers=1) as pool:
                pending = None
                for strip in iter_strips(profile, size, seed, strip_rows):
                    if pending is not None:
                        pending.result()
                    pending = pool.submit(write, strip)
                if pending is not None:
                    pending.result()
            for writer in writers.values():
                writer.close()
            for dst in datasets.values():
                dst.close()
        for role, tmp in temps.items():
            publish(tmp, paths[role])
    except BaseException:
        for dst in datasets.values():
            dst.close()
        for tmp in temps.values():
            discard(tmp)
        raise
    return paths


# ------------------------------------------------------------------------------------------------------------
# hyperspectral + multispectral (hmif): a PRISMA-like cube at 30 m and Sentinel-2's 10 m bands

HMIF_MS_GSD_M = 10.0
"""Pixel of the Sentinel-2 10 m bands and of the truth (``reference.tif``)."""

HMIF_RATIO = 3
"""HS pixel / MS pixel: PRISMA's 30 m over Sentinel-2's 10 m; every HS pixel covers exactly 3 x 3 MS pixels."""

HMIF_HS_MTF_GAIN = 0.3
"""PRISMA's MTF gain at its Nyquist frequency (the ``prisma_l2d`` profile's, from the pansharpening toolbox)."""

HMIF_BANDS = 230
"""PRISMA bands as a reader delivers them (VNIR below the SWIR range, then SWIR): about what real files hold."""

HMIF_MIN_BANDS, HMIF_MAX_BANDS = 8, 240

HMIF_SIZE = 384
"""Default side of an hmif scene in MS (10 m) pixels: 3.84 km, 128 HS pixels."""

HMIF_S2_BANDS = ("B02", "B03", "B04", "B08")
"""The Sentinel-2 bands written: those at 10 m, the MS grid."""

S2_QUANTIFICATION = 10000.0
S2_BASELINE = "02.14"
"""Processing baseline stated in the STAC item: before 04.00, so no BOA_ADD_OFFSET, as ``raster:bands`` says too."""

HMIF_ROW_UNIT = 48
"""Strips are a multiple of this many MS rows: of 3 (whole HS pixels) and of 16 (the reference's tile height and
the HE5 chunk height in HS rows), so that every strip completes whole tiles and chunks and nothing is buffered."""

HMIF_MARGIN = 21
"""Truth rows rendered above and below a strip for the MTF blur: the 41-tap kernel reaches 20; a multiple of 3."""

HMIF_STRIP_VALUES = 1 << 27
"""Truth values (float32) held per strip by default, margins included: 512 MB, about 140 rows at 3000 px x 240."""

HMIF_START_TIME = "2020-05-24T10:37:04.529"
"""Acquisition time written into both products (a same-day PRISMA / Sentinel-2 pair)."""

_HMIF_UNUSED_SLOTS = (3, 2)
"""Zero-wavelength (unused) slots after the used ones in the VNIR and SWIR cubes, as real files have."""

_HMIF_BLOCK, _HMIF_HS_BLOCK, _HMIF_CHUNK_COLS = 256, 128, 64

# Endmember reflectance beyond 1000 nm (continuing ENDMEMBERS, which stops there): liquid-water absorptions of
# leaves and wet soil at 1200, 1450 and 1940 nm, cellulose/lignin at 2100 nm (dry vegetation), clay minerals at
# 2200 nm (soil, tiles), carbonate near 2340 nm (concrete), hydrocarbons near 1730 and 2300 nm (asphalt); water
# absorbs nearly everything. The overall levels follow the USGS and ECOSTRESS spectral libraries' shapes.
_SWIR_WAVELENGTHS = np.array([1100, 1200, 1300, 1400, 1450, 1500, 1650, 1800, 1900, 1950, 2000, 2100, 2200, 2300,
                              2400, 2500], float)
_SWIR_ENDMEMBERS: dict[str, tuple[float, ...]] = {
    "vegetation": (.465, .430, .420, .300, .180, .210, .330, .290, .120, .080, .100, .160, .190, .150, .100, .070),
    "trees": (.365, .335, .325, .220, .130, .150, .240, .210, .080, .055, .065, .110, .135, .100, .070, .050),
    "dry_vegetation":
        (.350, .360, .370, .340, .300, .320, .400, .390, .320, .290, .300, .270, .330, .300, .270, .250),
    "soil": (.350, .360, .370, .360, .330, .345, .390, .400, .360, .340, .360, .380, .330, .360, .340, .320),
    "wet_soil": (.172, .170, .170, .140, .100, .110, .150, .140, .080, .060, .075, .100, .090, .095, .075, .060),
    "water": (.002, .0015, .001, .0008, .0005, .0006, .0008, .0006, .0004, .0003, .0004, .0005, .0005, .0004,
              .0003, .0003),
    "turbid_water": (.004, .003, .002, .0015, .001, .001, .0012, .001, .0006, .0005, .0006, .0007, .0007, .0006,
                     .0005, .0005),
    "asphalt": (.103, .106, .108, .110, .108, .110, .118, .118, .115, .113, .118, .122, .118, .110, .115, .112),
    "concrete": (.365, .365, .362, .345, .315, .330, .350, .345, .305, .285, .300, .315, .310, .290, .285, .275),
    "red_tiles": (.390, .400, .410, .400, .380, .390, .415, .420, .395, .375, .385, .400, .360, .390, .370, .350),
    "dark_roof": (.097, .098, .100, .101, .100, .101, .104, .105, .103, .102, .103, .105, .104, .102, .101, .100),
    "metal_roof": (.242, .238, .234, .229, .226, .224, .218, .212, .208, .206, .204, .199, .195, .190, .186, .182),
    "white_paint": (.595, .585, .575, .530, .460, .490, .520, .500, .420, .380, .400, .430, .410, .360, .330, .300),
}


@dataclass(frozen=True)
class PrismaBandGrid:
    """Band centres and FWHM (nm) of a synthetic PRISMA cube, camera by camera as its HE5 file lists them.

    ``wavelengths[:vnir_count]`` are the VNIR camera's bands, ascending, the last few inside the SWIR range (the
    cameras overlap around 920-1010 nm, as in real files); the rest are the SWIR camera's, ascending.
    """

    wavelengths: np.ndarray
    fwhm: np.ndarray
    vnir_count: int

    @property
    def names(self) -> tuple[str, ...]:
        """Band names as the PRISMA reader gives them: VNIR01.., SWIR001.., counted per camera."""
        swir = len(self.wavelengths) - self.vnir_count
        return (*(f"VNIR{i:02d}" for i in range(1, self.vnir_count + 1)),
                *(f"SWIR{i:03d}" for i in range(1, swir + 1)))

    @property
    def kept(self) -> np.ndarray:
        """Indices of the bands a reader keeps (VNIR bands at or above the first SWIR centre dropped), in
        ascending wavelength: the bands of ``hs.tif``, ``reference.tif`` and of a fused product."""
        first_swir = self.wavelengths[self.vnir_count]
        vnir = np.flatnonzero(self.wavelengths[:self.vnir_count] < first_swir)
        return np.concatenate([vnir, np.arange(self.vnir_count, len(self.wavelengths))])


def prisma_band_grid(bands: int = HMIF_BANDS) -> PrismaBandGrid:
    """A PRISMA-like band grid of ``bands`` bands as read (the VNIR/SWIR overlap dropped), plus the overlap.

    VNIR centres from 402 to 915 nm, then the VNIR camera's overlap bands on the same spacing up to 1010 nm (at least
    one); SWIR centres from 920 to 2497 nm; a quarter of the bands in the VNIR, as in real products; FWHM from 10 to
    12 nm (VNIR, growing with wavelength) and from 12 to 10 nm (SWIR). Centres are rounded to 6 significant digits
    (0.001 nm below 1000 nm, 0.01 nm above), which the HE5's float32 attributes and the ``%g`` wavelength tags of
    fused products both hold exactly: a product's wavelengths then equal the file's.
    """
    bands = _check_int(bands, "bands")
    if not HMIF_MIN_BANDS <= bands <= HMIF_MAX_BANDS:
        raise SpatialxError(f"--bands {bands}: a PRISMA-like cube has {HMIF_MIN_BANDS} to {HMIF_MAX_BANDS} bands",
                            hint=f"real products have about {HMIF_BANDS}; tests use fewer, e.g. 60")
    n_vnir = max(3, round(bands * 0.25))
    vnir = np.linspace(402.0, 915.0, n_vnir)
    step = vnir[1] - vnir[0]
    # Overlap bands must lie at or above the first SWIR centre (920 nm), so that a reader drops them: step > 5 nm.
    overlap = (915.0 + step * np.arange(1, int(95.0 // step) + 1)) if step <= 95.0 else np.array([1000.0])
    swir = np.linspace(920.0, 2497.0, bands - n_vnir)
    vnir = np.concatenate([vnir, overlap])
    wavelengths = np.array([float(f"{w:.6g}") for w in np.concatenate([vnir, swir])])
    fwhm = np.round(np.concatenate([10.0 + 2.0 * (vnir - 402.0) / 608.0, 12.0 - 2.0 * (swir - 920.0) / 1577.0]), 3)
    return PrismaBandGrid(wavelengths=wavelengths, fwhm=fwhm, vnir_count=len(vnir))


def _check_int(value: object, name: str, path: Path | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise SpatialxError(f"{name} must be an integer, got {value!r}", path=path)
    return int(value)


def _hs_band_tables(grid: PrismaBandGrid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Endmember matrix (B, K), shadow factor (B,) and path radiance (B,) of the HS bands, float32.

    Each band is the boxcar mean of the spectra over its FWHM, as :func:`band_reflectance` does for the MS sensors;
    the spectra are ENDMEMBERS continued by the SWIR table.
    """
    table = np.concatenate([_WAVELENGTHS, _SWIR_WAVELENGTHS])
    spectra = np.array([ENDMEMBERS[m] + _SWIR_ENDMEMBERS[m] for m in _MATERIALS])  # (K, wavelengths)
    offsets = np.linspace(-0.5, 0.5, 33)
    emat = np.empty((len(grid.wavelengths), len(_MATERIALS)), np.float32)
    for b, (centre, width) in enumerate(zip(grid.wavelengths, grid.fwhm, strict=True)):
        samples = centre + width * offsets
        emat[b] = [np.mean(np.interp(samples, table, spectrum)) for spectrum in spectra]
    swl, sval = zip(*_SHADOW_TABLE, strict=True)
    # Beyond 1000 nm the diffuse skylight in shadow keeps falling; the table's last value is kept (0.10).
    shade = np.interp(grid.wavelengths, swl, sval).astype(np.float32)
    haze = (0.012 * (450.0 / grid.wavelengths) ** 4).astype(np.float32)
    return emat, shade, haze


def s2_response_weights(grid: PrismaBandGrid, bands: tuple[str, ...] = HMIF_S2_BANDS) -> np.ndarray:
    """``W`` (len(bands), kept HS bands): Sentinel-2 band ``m`` = ``sum_k W[m, k] * truth_k``, rows summing to 1.

    The truth spectrum (known at the kept HS band centres, ascending) integrated against the band's
    :meth:`~spatialx.sensors.Band.response_curve` by the trapezoidal rule, divided by the response's own integral
    on the same grid: ``trapezoid(r * truth, wl) / trapezoid(r, wl)``. The trapezoid weights handle the uneven
    spacing where the VNIR grid meets the SWIR grid.
    """
    from spatialx.sensors import get_sensor

    wl = grid.wavelengths[grid.kept]
    steps = np.diff(wl)
    spacing = np.concatenate([[steps[0]], steps[:-1] + steps[1:], [steps[-1]]]) / 2.0
    s2 = get_sensor("s2_l2a")
    weights = np.stack([s2.layer(band).response_curve(wl) * spacing for band in bands])
    return weights / weights.sum(axis=1, keepdims=True)


def default_hmif_strip_rows(size: int, bands: int) -> int:
    """Strip height used when none is given: about :data:`HMIF_STRIP_VALUES` truth values with the margins, a
    multiple of :data:`HMIF_ROW_UNIT`, at least one unit and no more than the scene needs."""
    rows = HMIF_STRIP_VALUES // (size * bands) - 2 * HMIF_MARGIN
    rows = max(HMIF_ROW_UNIT, rows // HMIF_ROW_UNIT * HMIF_ROW_UNIT)
    return int(min(rows, -(-size // HMIF_ROW_UNIT) * HMIF_ROW_UNIT))


@dataclass
class _HmifStrip:
    """MS rows ``row0:row1`` of an hmif scene; ``truth`` is a view into a buffer the next strip overwrites."""

    row0: int
    row1: int
    truth: np.ndarray  # (all HS bands, rows, W) float32 reflectance at 10 m, the HE5's band order
    hs: np.ndarray  # (all HS bands, rows / 3, W / 3) float32 reflectance at 30 m
    ms: np.ndarray  # (len(HMIF_S2_BANDS), rows, W) float32 reflectance at 10 m


def _workers() -> int:
    import os

    return max(1, min(8, os.cpu_count() or 1))


def _hmif_strips(size: int, grid: PrismaBandGrid, seed: int, rows: int,
                 on_truth: Callable[[int, int, np.ndarray], Future | None] | None = None) -> Iterator[_HmifStrip]:
    """Render the truth strip by strip, each with :data:`HMIF_MARGIN` rows of context for the blur; the margin
    rows shared with the previous strip are moved, not rendered again. Peak memory: one strip of truth.

    ``on_truth(row0, row1, truth)`` is called as soon as a strip's truth is ready, before its blur; the future it
    may return (a write running in another thread) is waited for before the buffer changes again.
    """
    from spatialx.filters import mtf_kernel

    lay = _layout(size, seed)
    emat, shade, haze = _hs_band_tables(grid)
    count = len(grid.wavelengths)
    keys = [_band_key(lay, b) for b in range(count)]
    kept = grid.kept
    weights = s2_response_weights(grid)
    # Responses fall below 1e-7 of their peak weight a few FWHM out: those bands cannot change a DN.
    terms = [[(int(kept[k]), np.float32(w[k])) for k in np.flatnonzero(w >= 1e-7 * w.max())] for w in weights]
    # The kernel's DC gain is 0.9989 (the toolbox does not renormalise it); a flat field must keep its reflectance.
    dc = np.float32(mtf_kernel(HMIF_HS_MTF_GAIN, HMIF_RATIO).sum())
    margin = HMIF_MARGIN
    buf = np.empty((count, min(size, rows + 2 * margin), size), np.float32)
    have0 = have1 = 0  # scene rows held in buf[:, :have1 - have0]
    workers = _workers()
    pending: Future | None = None
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for y0 in range(0, size, rows):
            y1 = min(size, y0 + rows)
            e0, e1 = max(0, y0 - margin), min(size, y1 + margin)
            if pending is not None:
                pending.result()
            keep = have1 - e0 if have0 <= e0 < have1 else 0
            if keep:
                buf[:, :keep] = buf[:, e0 - have0:have1 - have0]  # numpy copies through a temporary on overlap
            _render_truth(lay, e0 + keep, e1, emat, shade, haze, keys, buf[:, keep:e1 - e0], pool, workers)
            have0, have1 = e0, e1
            view = buf[:, :e1 - e0]
            top = (y0 - e0) // HMIF_RATIO  # e0 and y0 are multiples of 3: decimation keeps the scene's phase
            hs = np.empty((count, (y1 - y0) // HMIF_RATIO, size // HMIF_RATIO), np.float32)

            def degrade(b: int, view: np.ndarray = view, hs: np.ndarray = hs, top: int = top) -> None:
                # one band at a time: the filter works in float64, and this keeps its copies small
                low = decimate_centred(mtf_filter(view[b], HMIF_HS_MTF_GAIN, HMIF_RATIO), HMIF_RATIO)
                np.divide(low[top:top + hs.shape[1]], dc, out=hs[b])

            truth = view[:, y0 - e0:y1 - e0]
            pending = on_truth(y0, y1, truth) if on_truth is not None else None
            list(pool.map(degrade, range(count)))
            ms = np.zeros((len(terms), y1 - y0, size), np.float32)
            scratch = np.empty((y1 - y0, size), np.float32)
            for m, band_terms in enumerate(terms):
                for b, w in band_terms:  # fixed order: the same sums whatever the strip
                    np.multiply(truth[b], w, out=scratch)
                    ms[m] += scratch
            yield _HmifStrip(row0=y0, row1=y1, truth=truth, hs=hs, ms=ms)
        if pending is not None:
            pending.result()


def _render_truth(lay: _Layout, r0: int, r1: int, emat: np.ndarray, shade: np.ndarray, haze: np.ndarray,
                  keys: list[int], out: np.ndarray, pool: ThreadPoolExecutor, workers: int) -> None:
    """Reflectance of scene rows ``r0:r1`` in every HS band into ``out`` (bands, r1 - r0, W), pixel ranges in
    parallel (numpy releases the GIL on each block; the results do not depend on the split)."""
    if r1 <= r0:
        return
    canvas, w = _render(lay, r0, r1)
    flat = out.reshape(out.shape[0], -1)  # a view: each band's rows are contiguous (checked below)
    n = flat.shape[1]
    active = [k for k in range(len(_MATERIALS)) if canvas.abundance[k].any()]
    chunk = -(-n // (workers * _BLOCK)) * _BLOCK
    jobs = [pool.submit(_mix_bands, canvas, w, r0, emat, shade, haze, keys, flat, None, s, min(n, s + chunk),
                        active) for s in range(0, n, chunk)]
    for job in jobs:
        job.result()
    if not np.shares_memory(flat, out):
        out[...] = flat.reshape(out.shape)


class _He5Writer:
    """A PRISMA L2D HE5 file in the layout of :func:`spatialx.io.prisma.write_prisma_l2d`, written in row strips.

    :func:`~spatialx.io.prisma.write_prisma_l2d` needs the whole cube in memory; this writes the same datasets and
    attributes strip by strip. The reflectance range of each cube is fixed to [0, 1] (``L2Scale*Min/Max``; the truth
    is clipped to it and the MTF blur stays inside), since it must be known before the first strip. The error
    matrices are all 0 (every pixel good): they are created with fill value 0 and left unwritten, which HDF5 reads
    back as 0 without storing a byte.
    """

    def __init__(self, path: Path, grid: PrismaBandGrid, rows: int, cols: int, crs_epsg: int,
                 ul_centre: tuple[float, float]):
        import h5py

        from spatialx.io.prisma import CAMERAS, _fields_path

        self.f = h5py.File(path, "w")
        self.parts = {"VNIR": slice(0, grid.vnir_count), "SWIR": slice(grid.vnir_count, len(grid.wavelengths))}
        self.unused = dict(zip(CAMERAS, _HMIF_UNUSED_SLOTS, strict=True))
        self.cubes = {}
        fields = _fields_path("2D")
        attrs = self.f.attrs
        for camera in CAMERAS:
            part, extra = self.parts[camera], self.unused[camera]
            slots = part.stop - part.start + extra
            chunks = (min(rows, HMIF_ROW_UNIT // HMIF_RATIO), slots, min(cols, _HMIF_CHUNK_COLS))
            self.cubes[camera] = self.f.create_dataset(f"{fields}/{camera}_Cube", shape=(rows, slots, cols),
                                                       dtype=np.uint16, chunks=chunks, compression="gzip")
            self.f.create_dataset(f"{fields}/{camera}_PIXEL_L2_ERR_MATRIX", shape=(rows, slots, cols), dtype=np.uint8,
                                  chunks=chunks, compression="gzip", fillvalue=0)
            title = camera.capitalize()
            pad = np.zeros(extra, np.float32)
            # Stored in descending wavelength, unused slots last, as real products (and write_prisma_l2d) do.
            attrs[f"List_Cw_{title}"] = np.concatenate([grid.wavelengths[part][::-1].astype(np.float32), pad])
            attrs[f"List_Fwhm_{title}"] = np.concatenate([grid.fwhm[part][::-1].astype(np.float32), pad])
            attrs[f"List_Cw_{title}_Flags"] = np.concatenate([np.ones(slots - extra, np.int8),
                                                              np.zeros(extra, np.int8)])
            attrs[f"L2Scale{title}Min"] = np.float32(0.0)
            attrs[f"L2Scale{title}Max"] = np.float32(1.0)
        attrs["Processing_Level"] = np.bytes_("2D")
        attrs["Product_StartTime"] = np.bytes_(HMIF_START_TIME)
        attrs["Epsg_Code"] = np.int32(crs_epsg)
        east, north = ul_centre
        right, bottom = east + (cols - 1) * HMIF_MS_GSD_M * HMIF_RATIO, north - (rows - 1) * HMIF_MS_GSD_M * HMIF_RATIO
        for corner, (x, y) in {"UL": (east, north), "UR": (right, north), "LL": (east, bottom),
                               "LR": (right, bottom)}.items():
            attrs[f"Product_{corner}corner_easting"] = np.float64(x)
            attrs[f"Product_{corner}corner_northing"] = np.float64(y)

    def write(self, hs: np.ndarray, row: int) -> None:
        """``hs`` (all bands, rows, cols) reflectance at HS rows ``row:row + rows``."""
        from spatialx.io.prisma import DN_MAX

        for camera, cube in self.cubes.items():
            part = hs[self.parts[camera]]
            dn = np.rint(np.clip(part, 0.0, 1.0) * np.float32(DN_MAX)).astype(np.uint16)
            block = np.zeros((part.shape[1], cube.shape[1], part.shape[2]), np.uint16)
            block[:, :part.shape[0]] = np.moveaxis(dn[::-1], 0, 1)  # (rows, slots, cols), descending
            cube[row:row + part.shape[1]] = block

    def close(self) -> None:
        self.f.close()


def _hmif_band_tags(dst, names: tuple[str, ...], wavelengths: np.ndarray, fwhm: np.ndarray) -> None:
    """Band descriptions and wavelength tags as :class:`spatialx.io.write.RasterWriter` writes them."""
    dst.descriptions = names
    for i, (centre, width) in enumerate(zip(wavelengths, fwhm, strict=True), start=1):
        # repr-exact decimals (not %g): the tags then equal the HE5's float32 centres as a reader prints them
        dst.update_tags(i, wavelength=repr(float(centre)), wavelength_units="nm", fwhm=repr(float(width)))
        dst.update_tags(i, ns="IMAGERY", CENTRAL_WAVELENGTH_UM=f"{centre / 1000:.6g}", FWHM_UM=f"{width / 1000:.6g}")


def _stac_item(size: int, transform: Affine, crs: str, seed: int) -> dict:
    """A minimal STAC item for the band COGs: ``raster:bands`` scale 0.0001 and offset 0 state the radiometry."""
    from rasterio.warp import transform_geom

    from spatialx.sensors import get_sensor

    s2 = get_sensor("s2_l2a")
    x0, y0 = transform.c, transform.f
    x1, y1 = x0 + size * transform.a, y0 + size * transform.e
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    geometry = transform_geom(crs, "EPSG:4326", {"type": "Polygon", "coordinates": [ring]})
    lons, lats = zip(*geometry["coordinates"][0], strict=True)
    common = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir"}
    assets = {}
    for name in HMIF_S2_BANDS:
        band = s2.layer(name)
        assets[name] = {
            "href": f"./{name}.tif", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "roles": ["data", "reflectance"],
            "eo:bands": [{"name": name, "common_name": common[name], "center_wavelength": band.center_nm / 1000,
                          "full_width_half_max": band.width_nm / 1000}],
            "raster:bands": [{"nodata": 0, "data_type": "uint16", "spatial_resolution": HMIF_MS_GSD_M,
                              "scale": 1.0 / S2_QUANTIFICATION, "offset": 0.0}],
            "proj:shape": [size, size], "proj:transform": list(transform)[:6],
        }
    return {
        "type": "Feature", "stac_version": "1.0.0",
        "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json",
                            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
                            "https://stac-extensions.github.io/projection/v1.1.0/schema.json"],
        "id": f"spatialx-sample-hmif-s2-seed{seed}",
        "geometry": geometry, "bbox": [min(lons), min(lats), max(lons), max(lats)],
        "properties": {"datetime": HMIF_START_TIME[:19] + "Z", "platform": "sentinel-2a", "constellation": "sentinel-2",
                       "instruments": ["msi"], "s2:product_type": "S2MSI2A", "s2:processing_baseline": S2_BASELINE,
                       "proj:epsg": int(crs.split(":")[1]), "description": "synthetic (spatialx sample --task hmif)"},
        "assets": assets, "links": [],
    }


def write_hmif_sample(out_dir: str | PathLike[str], size: int = HMIF_SIZE, bands: int = HMIF_BANDS, seed: int = 0,
                      overwrite: bool = False, strip_rows: int | None = None) -> dict[str, Path]:
    """Write a synthetic PRISMA + Sentinel-2 scene for hyperspectral-multispectral fusion into ``out_dir``.

    ``size`` is the side in MS (10 m) pixels, a multiple of 3; ``bands`` the PRISMA bands as read (see
    :func:`prisma_band_grid`). The landscape is the pansharpening scene's (:func:`iter_strips`), at 10 m, with each
    material's spectrum now continued to 2500 nm. Files:

    * ``hs.he5`` (role ``"hs"``): the PRISMA L2D cube at 30 m in the real HE5 layout, uint16 over [0, 1], both
      cameras with their overlap, 3 and 2 unused slots, UL/LR corners at the corner-pixel centres;
    * ``hs.tif`` (``"hs_tif"``): the same cube as float32 reflectance, the bands a reader keeps, before the HE5's
      16-bit quantisation;
    * ``ms/`` (``"ms"``): Sentinel-2 B02, B03, B04, B08 at 10 m as band COGs ``B02.tif``.. of uint16 DN =
      reflectance * 10000 (no offset; clipped to 1..32767, DN 0 being no data) with ``item.json``, a STAC item
      whose ``raster:bands`` state scale 0.0001 and offset 0 (baseline 02.14);
    * ``reference.tif`` (``"reference"``): the truth at 10 m, float32 reflectance, the bands of ``hs.tif``.

    The truth is reflectance at the HS band centres (each band the mean of the spectra over its FWHM); the HS is the
    truth blurred by PRISMA's MTF (:func:`spatialx.filters.mtf_filter`, gain :data:`HMIF_HS_MTF_GAIN` at Nyquist,
    ratio 3, the kernel scaled to unit DC gain) and sampled at the centre of each 3 x 3 block, so the HS grid (same
    upper-left corner, 30 m) nests the MS grid exactly; each Sentinel-2 band is the truth integrated against its
    response (:func:`s2_response_weights`). Everything is generated and written in strips of ``strip_rows`` MS rows
    (a multiple of :data:`HMIF_ROW_UNIT`; default :func:`default_hmif_strip_rows`), so peak memory is set by one strip
    (its truth buffer, outputs and the blur's copies), whatever the scene's height: 1.45 GB peak RSS measured for
    the 3000 px, 230-band benchmark scene (8 GB of truth; 135 s on 2 cores). The same arguments give the same
    files. Existing files are refused unless ``overwrite``; everything is written under temporary names and renamed
    at the end. Returns ``{"hs": ..., "hs_tif": ..., "ms": ..., "reference": ...}``.
    """
    import json

    import rasterio
    import rasterio.shutil

    from spatialx.io.outputs import discard, new_temporary, publish

    out = Path(out_dir)
    size = _check_int(size, "size", out)
    if size < 4 * HMIF_RATIO or size % HMIF_RATIO:
        raise SpatialxError(f"size {size}: an hmif scene's side is a multiple of {HMIF_RATIO} MS pixels, at least "
                            f"{4 * HMIF_RATIO}", path=out, hint="e.g. --size 192 (64 PRISMA pixels)")
    try:
        grid = prisma_band_grid(bands)
    except SpatialxError as exc:
        raise SpatialxError(exc.message, path=out, hint=exc.hint) from None
    seed = _check_int(seed, "seed", out)
    if strip_rows is None:
        rows = default_hmif_strip_rows(size, len(grid.wavelengths))
    else:
        rows = _check_int(strip_rows, "strip_rows", out)
        if rows <= 0 or rows % HMIF_ROW_UNIT:
            raise SpatialxError(f"strip_rows {rows}: must be a positive multiple of {HMIF_ROW_UNIT}", path=out)
    if out.exists() and not out.is_dir():
        raise OutputError("not a directory", path=out, hint="give a directory to write the scene into")
    ms_dir = out / "ms"
    band_paths = {name: ms_dir / f"{name}.tif" for name in HMIF_S2_BANDS}
    item_path = ms_dir / "item.json"
    files = {"hs": out / "hs.he5", "hs_tif": out / "hs.tif", "reference": out / "reference.tif",
             **{f"ms_{name}": path for name, path in band_paths.items()}, "item": item_path}
    # the Sentinel-2 reader takes every band file and STAC item of ms/ for part of the product
    _prepare_product_folders(out, [ms_dir], files, overwrite)

    hs_size = size // HMIF_RATIO
    x0, y0 = DEFAULT_ORIGIN
    gsd_hs = HMIF_MS_GSD_M * HMIF_RATIO
    ms_transform = Affine(HMIF_MS_GSD_M, 0.0, x0, 0.0, -HMIF_MS_GSD_M, y0)
    hs_transform = Affine(gsd_hs, 0.0, x0, 0.0, -gsd_hs, y0)
    epsg = int(DEFAULT_CRS.split(":")[1])
    kept = grid.kept
    names = tuple(grid.names[k] for k in kept)
    tags = {"generator": "spatialx.sample", "task": "hmif", "seed": seed, "units": "reflectance"}
    temps: dict[str, Path] = {}
    staging: dict[str, Path] = {}
    datasets = []
    he5 = None
    try:
        temps = {role: new_temporary(path, "" if role == "item" else path.suffix) for role, path in files.items()}
        staging = {name: new_temporary(path, ".tif") for name, path in band_paths.items()}
        with rasterio.Env(GDAL_CACHEMAX=256 * 1024 * 1024):
            common = {"driver": "GTiff", "crs": DEFAULT_CRS, "tiled": True, "compress": "deflate", "zlevel": 1,
                      "num_threads": "ALL_CPUS", "BIGTIFF": "IF_SAFER", "interleave": "band"}
            # band-interleaved: each band's tiles are complete after one strip, so GDAL never holds all the bands
            hs_tif = rasterio.open(temps["hs_tif"], "w", width=hs_size, height=hs_size, count=len(kept),
                                   dtype="float32", transform=hs_transform, blockxsize=_HMIF_HS_BLOCK,
                                   blockysize=_HMIF_HS_BLOCK, predictor=3, **common)
            datasets.append(hs_tif)
            reference = rasterio.open(temps["reference"], "w", width=size, height=size, count=len(kept),
                                      dtype="float32", transform=ms_transform, blockxsize=_HMIF_BLOCK,
                                      blockysize=HMIF_ROW_UNIT, predictor=3, **common)
            datasets.append(reference)
            for dst, sensor in ((hs_tif, "prisma_l2d"), (reference, "prisma_l2d")):
                _hmif_band_tags(dst, names, grid.wavelengths[kept], grid.fwhm[kept])
                dst.update_tags(sensor=sensor, **tags)
            s2 = {}
            for name in HMIF_S2_BANDS:
                # uncompressed staging, rewritten as a COG at the end (the COG driver cannot write in strips)
                dst = rasterio.open(staging[name], "w", driver="GTiff", width=size, height=size, count=1,
                                    dtype="uint16", crs=DEFAULT_CRS, transform=ms_transform, nodata=0)
                datasets.append(dst)
                dst.descriptions = (name,)
                s2[name] = dst
            he5 = _He5Writer(temps["hs"], grid, hs_size, hs_size, epsg, (x0 + gsd_hs / 2, y0 - gsd_hs / 2))
            hs_rows = _RowWriter(hs_tif, _HMIF_HS_BLOCK)
            from rasterio.windows import Window

            def write_truth(row0: int, row1: int, truth: np.ndarray) -> None:
                window = Window(0, row0, size, row1 - row0)
                for i, k in enumerate(kept, start=1):
                    reference.write(truth[k], i, window=window)

            # The reference (the largest file) is compressed while the strip's HS is computed; nothing else
            # touches that dataset, and the strip generator waits for the write before reusing its buffer.
            with ThreadPoolExecutor(max_workers=1) as writer:
                for strip in _hmif_strips(size, grid, seed, rows,
                                          lambda r0, r1, truth: writer.submit(write_truth, r0, r1, truth)):
                    hs_rows.add(strip.hs[kept])
                    he5.write(strip.hs, strip.row0 // HMIF_RATIO)
                    dn = np.clip(np.rint(strip.ms * np.float32(S2_QUANTIFICATION)), 1, 32767).astype(np.uint16)
                    window = Window(0, strip.row0, size, strip.row1 - strip.row0)
                    for m, name in enumerate(HMIF_S2_BANDS):
                        s2[name].write(dn[m], 1, window=window)
            hs_rows.close()
            he5.close()
            for dst in datasets:
                dst.close()
            for name in HMIF_S2_BANDS:
                final = temps[f"ms_{name}"]
                final.unlink()
                rasterio.shutil.copy(staging[name], final, driver="COG", COMPRESS="DEFLATE", PREDICTOR="YES",
                                     BLOCKSIZE=512, RESAMPLING="AVERAGE", NUM_THREADS="ALL_CPUS")
        item = _stac_item(size, ms_transform, DEFAULT_CRS, seed)
        temps["item"].write_text(json.dumps(item, indent=2) + "\n", encoding="utf-8")
        for role, tmp in temps.items():
            publish(tmp, files[role])
        for tmp in staging.values():
            discard(tmp)
    except BaseException:
        if he5 is not None:
            he5.close()
        for dst in datasets:
            dst.close()
        for tmp in (*temps.values(), *staging.values()):
            discard(tmp)
        raise
    return {"hs": files["hs"], "hs_tif": files["hs_tif"], "ms": ms_dir, "reference": files["reference"]}


# ------------------------------------------------------------------------------------------------------------
# spatio-temporal fusion (stfuse): Landsat 8 C2 L2 at two dates, MODIS MCD43A4 at three, the 30 m truth between

STFUSE_SIZE = 300
"""Default side of an stfuse scene in Landsat (30 m) pixels: 9 km, about 19 MODIS pixels."""

STFUSE_MIN_SIZE, STFUSE_MAX_SIZE = 64, 2048

STFUSE_GSD_M = 30.0
STFUSE_CRS = DEFAULT_CRS
"""The Landsat grid: UTM zone 31N, upper-left corner :data:`DEFAULT_ORIGIN` (43.35 N, 3.0 E), as the hmif scene."""

STFUSE_DATES = ("2021-05-01", "2021-06-02", "2021-07-04")
"""t1 < t2 < t3: days Landsat 8 images WRS-2 path 196 (16-day repeat, two cycles apart); MODIS sees every one."""

STFUSE_PREDICT = STFUSE_DATES[1]
"""The date only the coarse sensor saw: ``reference.tif`` is the truth then."""

STFUSE_BANDS = ("SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7")
"""The Landsat bands a fusion predicts (those MODIS also records) and the bands of ``reference.tif``."""

STFUSE_COARSE_GAIN, STFUSE_COARSE_OFFSET = 1.02, 0.005
"""The coarse sensor's radiometry against the fine one's: MODIS = gain * footprint mean of the truth + offset."""

STFUSE_CHANGE_SHAPE = (12, 15)
"""Rows and columns (30 m pixels: 360 m x 450 m) of the forest patch cleared between t1 and t2."""

STFUSE_CUT_DATE = "2021-05-17"
"""When the patch was cleared (between t1 and t2): it is bare soil, slash and a little regrowth from then on."""

MODIS_500M_PIXEL_M = 463.312716527917
"""The MODIS sinusoidal 500 m grid cell: a tile's 1111950.52 m over 2400 pixels (CHARACTERISTICBINSIZE)."""

MODIS_GRID_ORIGIN = (-20015109.354, 10007554.677)
"""Upper-left corner of tile h00v00 in the sinusoidal CRS: every MODIS grid is aligned on it."""

MODIS_TILE_M = 2400 * MODIS_500M_PIXEL_M

STFUSE_COARSE_MARGIN = 2
"""Coarse pixels around the fine footprint: the resampling kernels that bring MODIS onto the Landsat grid reach 2."""

_STFUSE_WRS = (196, 30)
_STFUSE_PROCESSING_DAYS = 9  # Landsat L2 products and MCD43A4 granules are made about this many days later
_STFUSE_SCENE_TIME = "10:37:21.4460050Z"
_STFUSE_SUN = {"2021-05-01": (58.04, 145.31, 1.0075), "2021-07-04": (64.98, 137.62, 1.0167)}
"""Sun elevation and azimuth (degrees) and Earth-Sun distance (AU) of the Landsat dates at the scene."""

#: MODIS band number -> the truth band it records (see :data:`_STFUSE_TRUTH_BANDS`).
_STFUSE_MODIS_SOURCES = {1: "SR_B4", 2: "SR_B5", 3: "SR_B2", 4: "SR_B3", 5: "MODIS_B5", 6: "SR_B6", 7: "SR_B7"}
#: Bands the truth is rendered in: every Landsat SR band, and MODIS band 5 (1240 nm), which no Landsat band covers.
_STFUSE_TRUTH_BANDS = ("SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7", "MODIS_B5")

# QA_PIXEL values (CFMask bits 0 fill, 1 dilated cloud, 3 cloud, 6 clear, 7 water; 8-15 confidences, low = 01).
_QA_CLEAR, _QA_WATER, _QA_DILATED, _QA_CLOUD = 21824, 21952, 21762, 22280

_LANDSAT_SR_MULT, _LANDSAT_SR_ADD = 2.75e-05, -0.2
_LANDSAT_ST_MULT, _LANDSAT_ST_ADD = 0.00341802, 149.0
_LANDSAT_SR_DN = (7273, 43636)
_MODIS_SCALE, _MODIS_FILL, _MODIS_QA_FILL = 0.0001, 32767, 255
_SINUSOIDAL_PROJ4 = "+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +R=6371007.181 +units=m +no_defs"


def _doy(date: str) -> int:
    import datetime as dt

    return dt.date.fromisoformat(date).timetuple().tm_yday


def _full_spectra() -> tuple[np.ndarray, np.ndarray]:
    """Wavelengths (nm) and the endmember spectra (materials, wavelengths) from 400 to 2500 nm."""
    table = np.concatenate([_WAVELENGTHS, _SWIR_WAVELENGTHS])
    return table, np.array([ENDMEMBERS[m] + _SWIR_ENDMEMBERS[m] for m in _MATERIALS])


def stfuse_band_tables() -> np.ndarray:
    """``E`` (truth bands, materials): each material's reflectance in each band of :data:`_STFUSE_TRUTH_BANDS`, the
    spectrum integrated against the band's :meth:`~spatialx.sensors.Band.response_curve` on a 1 nm grid."""
    wl = np.arange(400.0, 2501.0)
    table, spectra = _full_spectra()
    dense = np.array([np.interp(wl, table, s) for s in spectra])  # (materials, wl)
    landsat, modis = get_sensor("landsat_c2l2"), get_sensor("mcd43a4")
    rows = []
    for name in _STFUSE_TRUTH_BANDS:
        band = modis.layer("Nadir_Reflectance_Band5") if name == "MODIS_B5" else landsat.layer(name)
        response = band.response_curve(wl)
        rows.append(dense @ response / response.sum())
    return np.array(rows, dtype=np.float32)


class _StCover(IntEnum):
    """Parcel kinds of the stfuse landscape, each with its own phenology."""

    SPRING_CROP = 0  # maize, sunflower: bare in May, green by July
    CEREAL = 1  # winter wheat: green in May and June, ripening by early July
    GRASS = 2  # pasture: green, growing in spring
    VINES = 3  # vineyards: sparse, leafing out
    FALLOW = 4  # bare or sparsely weedy soil
    FOREST = 5


_ST_PROBS = np.array([0.34, 0.10, 0.18, 0.12, 0.10, 0.16])
_ST_CELL, _ST_ASPECT = 14.0, 1.4  # parcel lattice: 420 m x 590 m


@dataclass(frozen=True)
class StfuseGrids:
    """The grids of an stfuse scene: Landsat (``fine``, ``size`` x ``size``), MODIS (``coarse``, sinusoidal) and the
    30 m grid the truth is rendered on (``extended``: the fine grid grown to cover every coarse pixel's footprint;
    the fine grid is its window ``offset`` = (col, row))."""

    size: int
    fine: Affine
    coarse: Affine
    coarse_shape: tuple[int, int]  # rows, cols
    extended: Affine
    extended_shape: tuple[int, int]
    offset: tuple[int, int]
    tile: tuple[int, int]  # MODIS h, v of the coarse grid's centre


def stfuse_grids(size: int) -> StfuseGrids:
    """The Landsat, MODIS and truth grids of an stfuse scene of ``size`` Landsat pixels.

    The MODIS grid is a window of the global sinusoidal 500 m grid (:data:`MODIS_GRID_ORIGIN`) covering the fine
    footprint (its edges mapped into the sinusoidal CRS) and :data:`STFUSE_COARSE_MARGIN` more pixels on each side.
    """
    from rasterio.warp import transform as transform_points

    from spatialx.io.modis import SINUSOIDAL

    g = STFUSE_GSD_M
    x0, y0 = DEFAULT_ORIGIN
    fine = Affine(g, 0.0, x0, 0.0, -g, y0)
    t = np.linspace(0.0, size, 65)
    cols = np.concatenate([t, np.full_like(t, size), t[::-1], np.zeros_like(t)])
    rows = np.concatenate([np.zeros_like(t), t, np.full_like(t, size), t[::-1]])
    sx, sy = (np.asarray(v) for v in transform_points(STFUSE_CRS, SINUSOIDAL, x0 + cols * g, y0 - rows * g))
    res, (gx, gy) = MODIS_500M_PIXEL_M, MODIS_GRID_ORIGIN
    margin = STFUSE_COARSE_MARGIN
    c0, c1 = math.floor((sx.min() - gx) / res) - margin, math.ceil((sx.max() - gx) / res) + margin
    r0, r1 = math.floor((gy - sy.max()) / res) - margin, math.ceil((gy - sy.min()) / res) + margin
    coarse = Affine(res, 0.0, gx + c0 * res, 0.0, -res, gy - r0 * res)
    tile = (int((c0 + c1) / 2 * res // MODIS_TILE_M), int((r0 + r1) / 2 * res // MODIS_TILE_M))
    # the coarse footprint back in UTM, on the fine lattice, one pixel more
    t = np.linspace(0.0, 1.0, 65)
    w, h = c1 - c0, r1 - r0
    ccols = np.concatenate([t * w, np.full_like(t, w), (1 - t) * w, np.zeros_like(t)])
    crows = np.concatenate([np.zeros_like(t), t * h, np.full_like(t, h), (1 - t) * h])
    ux, uy = (np.asarray(v) for v in transform_points(SINUSOIDAL, STFUSE_CRS, coarse.c + ccols * res,
                                                          coarse.f - crows * res))
    e0, e1 = math.floor((ux.min() - x0) / g) - 1, math.ceil((ux.max() - x0) / g) + 1
    f0, f1 = math.floor((y0 - uy.max()) / g) - 1, math.ceil((y0 - uy.min()) / g) + 1
    e0, f0 = min(e0, 0), min(f0, 0)
    e1, f1 = max(e1, size), max(f1, size)
    extended = Affine(g, 0.0, x0 + e0 * g, 0.0, -g, y0 - f0 * g)
    return StfuseGrids(size=size, fine=fine, coarse=coarse, coarse_shape=(h, w), extended=extended,
                       extended_shape=(f1 - f0, e1 - e0), offset=(-e0, -f0), tile=tile)


@dataclass(frozen=True)
class _StfuseLandscape:
    """Static per-pixel fields of the truth grid; :func:`_stfuse_abundance` makes material fractions of them."""

    kind: np.ndarray  # (H, W) _StCover
    onset: np.ndarray  # day of year of green-up (crops, grass, vines) or of ripening (cereal)
    vigour: np.ndarray  # peak green fraction
    wet: np.ndarray  # share of wet soil in the soil fraction (before the season's drying)
    bright: np.ndarray  # brightness factor
    water: np.ndarray  # water cover 0..1 (river, lake)
    turbid: np.ndarray  # turbid share of the water
    riparian: np.ndarray  # tree cover along the river
    town: np.ndarray  # built-up cover 0..1
    built: np.ndarray  # built share of a town pixel (the rest is gardens)
    road: np.ndarray  # asphalt cover
    change: tuple[int, int, int, int]  # row0, row1, col0, col1 of the cleared patch (truth grid)
    clouds: np.ndarray  # (H, W) uint8: 0 clear, 1 dilated cloud, 2 cloud (the t3 Landsat image only)
    keys: Mapping[str, int]


def _ellipse_gap(X: np.ndarray, Y: np.ndarray, centre: tuple[float, float], radii: tuple[float, float],
                 noise: np.ndarray, roughness: float) -> np.ndarray:
    """Signed distance (pixels, about) outside an ellipse with a noisy edge: negative inside."""
    cx, cy = centre
    ra, rb = radii
    rho = np.sqrt(((X - np.float32(cx)) / np.float32(ra)) ** 2 + ((Y - np.float32(cy)) / np.float32(rb)) ** 2)
    return (rho - np.float32(1)) * np.float32(min(ra, rb)) - np.float32(roughness) * (noise - np.float32(0.5))


def _stfuse_landscape(grids: StfuseGrids, seed: int) -> _StfuseLandscape:
    """The landscape on the truth grid, drawn from ``seed``: parcels, their phenology parameters, water, town, road,
    the forest stand and its cleared patch, the t3 clouds. Placed relative to the fine footprint, so every feature
    lies in it whatever ``size``."""
    from dataclasses import replace

    rng = np.random.default_rng([seed, 0x57F05E])
    names = ("parcels", "params", "texture", "texture2", "onset_noise", "edges", "urban", "noise", "wet")
    keys = {n: int(k) for n, k in zip(names, rng.integers(0, 2**32, size=len(names), dtype=np.uint64), strict=True)}
    height, width = grids.extended_shape
    n = float(grids.size)
    ox, oy = grids.offset
    xs = np.arange(width, dtype=np.float32) + np.float32(0.5)
    ys = np.arange(height, dtype=np.float32) + np.float32(0.5)
    X, Y = xs[None, :], ys[:, None]

    # parcels: Voronoi cells of a jittered lattice in a rotated, stretched frame
    theta = rng.uniform(0, np.pi)
    ct, st = np.float32(math.cos(theta)), np.float32(math.sin(theta))
    u = ((X * ct + Y * st) * np.float32(1 / _ST_CELL)).ravel()
    v = ((Y * ct - X * st) * np.float32(1 / (_ST_CELL * _ST_ASPECT))).ravel()
    lat, i1, _, _, _ = _voronoi(u, v, keys["parcels"])
    ph = _mix32(lat.hash ^ np.uint32(keys["params"]))
    kind_tab = np.searchsorted(np.cumsum(_ST_PROBS), _unit(ph), side="right").clip(0, len(_StCover) - 1)
    u1, u2, u3, u4 = _unit(ph, 0), _unit(ph, 16), _unit(_mix32(ph), 8), _unit(_mix32(ph), 24)
    onset_tab = np.select([kind_tab == _StCover.SPRING_CROP, kind_tab == _StCover.CEREAL, kind_tab == _StCover.GRASS,
                           kind_tab == _StCover.VINES],
                          [140 + 28 * u1, 172 + 16 * u1, 118 + 20 * u1, 146 + 18 * u1], 0).astype(np.float32)
    kind = kind_tab[i1].reshape(height, width).astype(np.uint8)
    onset = onset_tab[i1].reshape(height, width)
    vigour = (np.float32(0.72) + np.float32(0.22) * u2)[i1].reshape(height, width)
    wet = (np.float32(0.1) + np.float32(0.4) * u4)[i1].reshape(height, width)
    bright = (np.float32(0.92) + np.float32(0.16) * u3)[i1].reshape(height, width)
    del u, v, i1
    # the season runs late uphill (the north of the scene) and a little unevenly: not one shift for all
    onset += np.float32(16.0) * (np.float32(0.5) - (Y - np.float32(oy)) / np.float32(n))
    onset += np.float32(8.0) * (_smooth_noise(xs, ys, 40.0, keys["onset_noise"]) - np.float32(0.5))
    texture = _smooth_noise(xs, ys, 3.0, keys["texture"])
    vigour *= np.float32(0.88) + np.float32(0.24) * texture
    bright *= np.float32(0.96) + np.float32(0.08) * _smooth_noise(xs, ys, 2.0, keys["texture2"])
    edges = _smooth_noise(xs, ys, 6.0, keys["edges"])

    # a forest stand in the fine footprint's north-east, with the patch that will be cleared inside it
    fx, fy = ox + 0.68 * n + rng.uniform(-1, 1), oy + 0.30 * n + rng.uniform(-1, 1)
    stand = _ellipse_gap(X, Y, (fx, fy), (max(22.0, 0.13 * n), max(18.0, 0.10 * n)), edges, 6.0) < 0
    kind[stand] = _StCover.FOREST
    rows, cols = STFUSE_CHANGE_SHAPE
    r0 = round(fy) - rows // 2 + int(rng.integers(-2, 3))
    c0 = round(fx) - cols // 2 + int(rng.integers(-2, 3))
    change = (r0, r0 + rows, c0, c0 + cols)

    # a meandering river in the west, a lake in the south-east; trees along the river
    river = _curve(rng, height, True, width=2.6, amplitude=0.04, wiggle=0.25)
    river = replace(river, centre=(river.centre - river.centre.mean() + np.float32(ox + 0.22 * n)).astype(np.float32))
    river_gap = river.distance(X, Y, slice(0, height)) - river.half_width_at(X, Y, slice(0, height))
    lake_gap = _ellipse_gap(X, Y, (ox + 0.84 * n, oy + 0.80 * n), (max(5.0, 0.07 * n), max(4.0, 0.045 * n)),
                            edges, 3.0)
    water = np.clip(np.float32(0.5) - np.minimum(river_gap, lake_gap), 0, 1).astype(np.float32)
    turbid = np.where(river_gap < lake_gap, np.float32(0.5), np.float32(0.15)).astype(np.float32)
    riparian = np.where((river_gap > 0.5) & (river_gap < 2.5), np.float32(0.55), np.float32(0)).astype(np.float32)

    # a small town in the south, a road through it
    tx, ty = ox + 0.46 * n, oy + 0.70 * n
    town = np.clip(np.float32(0.5) - _ellipse_gap(X, Y, (tx, ty), (max(5.0, 0.11 * n), max(4.0, 0.08 * n)),
                                                     edges, 4.0), 0, 1).astype(np.float32)
    blocks = _unit(_hash2(np.arange(width)[None, :] // 2, np.arange(height)[:, None] // 2, keys["urban"]))
    built = (np.float32(0.5) + np.float32(0.4) * blocks).astype(np.float32)
    angle = rng.uniform(0, np.pi)
    nx, ny = -math.sin(angle), math.cos(angle)
    dist = np.abs((X - np.float32(tx)) * np.float32(nx) + (Y - np.float32(ty)) * np.float32(ny))
    road = (np.float32(0.4) * np.clip(np.float32(1) - dist, 0, 1)).astype(np.float32)

    # a few clouds over the fine footprint at t3, with CFMask's dilation ring
    clouds = np.zeros((height, width), np.uint8)
    for (px, py), radius in (((0.30, 0.44), 2.7), ((0.35, 0.49), 1.8)):
        d = np.hypot(X - np.float32(ox + px * n), Y - np.float32(oy + py * n))
        clouds[(d < radius + 2.0) & (clouds == 0)] = 1
        clouds[d < radius] = 2
    return _StfuseLandscape(kind=kind, onset=onset, vigour=vigour, wet=wet, bright=bright, water=water, turbid=turbid,
                            riparian=riparian, town=town, built=built, road=road, change=change, clouds=clouds,
                            keys=keys)


def _logistic(z: np.ndarray) -> np.ndarray:
    return (np.float32(1) / (np.float32(1) + np.exp(-z))).astype(np.float32)


def _stfuse_abundance(land: _StfuseLandscape, date: str) -> np.ndarray:
    """Material fractions ``(materials, H, W)`` at ``date``: each parcel's phenology, then water, town, road and the
    cleared patch blended over it."""
    d = np.float32(_doy(date))
    shape = land.kind.shape
    a = np.zeros((len(_MATERIALS), *shape), np.float32)
    # soils dry out over the season: the wet share falls from May to July
    wet = np.clip(land.wet * np.float32(np.clip(1.5 - (d - 121.0) / 80.0, 0.5, 1.5)), 0, 0.9)
    green = np.zeros(shape, np.float32)
    dry = np.zeros(shape, np.float32)
    trees = np.zeros(shape, np.float32)
    k, g, on = land.kind, land.vigour, land.onset
    sel = k == _StCover.SPRING_CROP
    green[sel] = (g * _logistic((d - on) / np.float32(6.5)))[sel]
    dry[sel] = 0.04
    sel = k == _StCover.CEREAL
    ripe = _logistic((d - on) / np.float32(7.0))
    green[sel] = (g * (np.float32(1) - ripe))[sel]
    dry[sel] = (g * ripe + np.float32(0.05))[sel]
    sel = k == _StCover.GRASS
    green[sel] = (g * (np.float32(0.5) + np.float32(0.4) * _logistic((d - on) / np.float32(10.0))))[sel]
    dry[sel] = 0.12
    sel = k == _StCover.VINES
    green[sel] = (np.float32(0.06) + np.float32(0.4) * g * _logistic((d - on) / np.float32(8.0)))[sel]
    dry[sel] = 0.05
    sel = k == _StCover.FALLOW
    green[sel] = (np.float32(0.15) * g)[sel]
    dry[sel] = 0.3
    sel = k == _StCover.FOREST
    trees[sel] = (np.float32(0.72) + np.float32(0.1) * g * _logistic((d - np.float32(128.0)) / np.float32(8.0)))[sel]
    green[sel] = 0.05
    dry[sel] = 0.05
    soil = _rest(green, dry, trees)
    a[VEG], a[DRY], a[TREE] = green, dry, trees
    a[SOIL], a[WSOIL] = soil * (np.float32(1) - wet), soil * wet

    def blend(cover: np.ndarray, mix: Mapping[int, np.ndarray | float]) -> None:
        for m in range(len(_MATERIALS)):
            target = mix.get(m, 0.0)
            a[m] += cover * (target - a[m])

    blend(land.riparian, {TREE: 0.85, VEG: 0.1, WSOIL: 0.05})
    gardens = np.float32(0.6) * (np.float32(0.8) + np.float32(0.2) * _logistic((d - np.float32(130)) / np.float32(12)))
    rest = np.float32(1) - land.built
    blend(land.town, {CONCRETE: 0.4 * land.built, TILES: 0.35 * land.built, ASPHALT: 0.25 * land.built,
                      VEG: gardens * rest, SOIL: (np.float32(1) - gardens) * rest})
    blend(land.road, {ASPHALT: 1.0})
    blend(land.water, {WATER: np.float32(1) - land.turbid, TURBID: land.turbid})
    if d >= _doy(STFUSE_CUT_DATE):
        r0, r1, c0, c1 = land.change
        cut = np.zeros(shape, np.float32)
        cut[r0:r1, c0:c1] = 1
        regrowth = np.float32(0.06 + 0.002 * (float(d) - _doy(STFUSE_CUT_DATE)))
        blend(cut, {SOIL: 0.62 - regrowth, DRY: 0.3, VEG: regrowth, WSOIL: 0.08})
    return a


def _stfuse_truth(land: _StfuseLandscape, emat: np.ndarray, date: str) -> np.ndarray:
    """Reflectance ``(truth bands, H, W)`` float32 at ``date``: the mixture of the materials' band reflectances times
    the brightness, with 1 % of per-date, per-band pixel noise (what a sensor of the truth's resolution sees)."""
    abundance = _stfuse_abundance(land, date)
    active = [m for m in range(len(_MATERIALS)) if abundance[m].any()]
    shape = land.kind.shape
    out = np.zeros((emat.shape[0], *shape), np.float32)
    ix, iy = np.arange(shape[1])[None, :], np.arange(shape[0])[:, None]
    key = _mix32(np.array([land.keys["noise"] ^ (_doy(date) * 0x9E3779B1 & 0xFFFFFFFF)], np.uint32))[0]
    for b in range(emat.shape[0]):
        for m in active:
            out[b] += abundance[m] * emat[b, m]
        out[b] *= land.bright
        band_key = int(key) ^ (b * 0x85EBCA6B & 0xFFFFFFFF)
        out[b] *= np.float32(1) + np.float32(BAND_NOISE) * _signed(_hash2(ix, iy, band_key))
    return np.clip(out, 0, 1, out=out)


class _Footprints:
    """Which coarse pixel holds each truth pixel's centre (mapped into the sinusoidal CRS), for footprint means."""

    def __init__(self, grids: StfuseGrids):
        from rasterio.warp import transform as transform_points

        from spatialx.io.modis import SINUSOIDAL

        height, width = grids.extended_shape
        e = grids.extended
        cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
        xs, ys = transform_points(STFUSE_CRS, SINUSOIDAL, (e.c + cols * e.a).ravel(), (e.f + rows * e.e).ravel())
        c = grids.coarse
        ch, cw = grids.coarse_shape
        ccol = np.floor((np.asarray(xs) - c.c) / c.a).astype(np.int64)
        crow = np.floor((np.asarray(ys) - c.f) / c.e).astype(np.int64)
        inside = (ccol >= 0) & (ccol < cw) & (crow >= 0) & (crow < ch)
        self.index = np.flatnonzero(inside)
        self.cell = (crow * cw + ccol)[inside]
        self.shape = (ch, cw)
        self.count = np.bincount(self.cell, minlength=ch * cw)
        if not self.count.all():  # the truth grid is built to cover every coarse pixel
            raise AssertionError("a coarse pixel holds no truth pixel")

    def mean(self, band: np.ndarray) -> np.ndarray:
        sums = np.bincount(self.cell, weights=band.ravel()[self.index].astype(np.float64),
                           minlength=self.count.size)
        return (sums / self.count).reshape(self.shape)


def _odl(groups: Mapping[str, Mapping[str, object]]) -> str:
    """MTL text as the USGS writes it: strings quoted, numbers and dates (:class:`_Bare`) not."""
    lines = ["GROUP = LANDSAT_METADATA_FILE"]
    for name, group in groups.items():
        lines.append(f"  GROUP = {name}")
        for key, value in group.items():
            text = str(value) if isinstance(value, _Bare | int | float) else f'"{value}"'
            lines.append(f"    {key} = {text}")
        lines.append(f"  END_GROUP = {name}")
    lines += ["END_GROUP = LANDSAT_METADATA_FILE", "END", ""]
    return "\n".join(lines)


class _Bare(str):
    """An ODL value written without quotes."""


def _landsat_ids(date: str) -> tuple[str, str, str]:
    """Level-2 product id, Level-1 product id and scene id of the Landsat 8 acquisition of ``date``."""
    import datetime as dt

    day = dt.date.fromisoformat(date)
    made = day + dt.timedelta(days=_STFUSE_PROCESSING_DAYS)
    path, row = _STFUSE_WRS
    tail = f"{path:03d}{row:03d}_{day:%Y%m%d}_{made:%Y%m%d}_02_T1"
    return f"LC08_L2SP_{tail}", f"LC08_L1TP_{tail}", f"LC8{path:03d}{row:03d}{day:%Y%j}LGN00"


def _landsat_mtl(date: str, grids: StfuseGrids, cloud_cover: float) -> str:
    import datetime as dt

    from rasterio.warp import transform as transform_points

    product, level1, scene = _landsat_ids(date)
    made = dt.date.fromisoformat(date) + dt.timedelta(days=_STFUSE_PROCESSING_DAYS)
    size, fine = grids.size, grids.fine
    half = STFUSE_GSD_M / 2
    corners = {"UL": (fine.c + half, fine.f - half), "UR": (fine.c + size * fine.a - half, fine.f - half),
               "LL": (fine.c + half, fine.f + size * fine.e + half),
               "LR": (fine.c + size * fine.a - half, fine.f + size * fine.e + half)}
    lons, lats = transform_points(STFUSE_CRS, "EPSG:4326", [x for x, _ in corners.values()],
                                  [y for _, y in corners.values()])
    elevation, azimuth, distance = _STFUSE_SUN.get(date, (60.0, 140.0, 1.0))
    path, row = _STFUSE_WRS
    sr_bands = range(1, 8)
    contents: dict[str, object] = {
        "ORIGIN": "Image courtesy of the U.S. Geological Survey (synthetic: spatialx sample --task stfuse)",
        "DIGITAL_OBJECT_IDENTIFIER": "https://doi.org/10.5066/P9OGBGM6", "LANDSAT_PRODUCT_ID": product,
        "PROCESSING_LEVEL": "L2SP", "COLLECTION_NUMBER": _Bare("02"), "COLLECTION_CATEGORY": "T1",
        "OUTPUT_FORMAT": "GEOTIFF",
        **{f"FILE_NAME_BAND_{b}": f"{product}_SR_B{b}.TIF" for b in sr_bands},
        "FILE_NAME_BAND_ST_B10": f"{product}_ST_B10.TIF",
        "FILE_NAME_QUALITY_L1_PIXEL": f"{product}_QA_PIXEL.TIF",
        "FILE_NAME_METADATA_ODL": f"{product}_MTL.txt",
        **{f"DATA_TYPE_BAND_{b}": "UINT16" for b in sr_bands},
        "DATA_TYPE_BAND_ST_B10": "UINT16", "DATA_TYPE_QUALITY_L1_PIXEL": "UINT16",
    }
    attributes: dict[str, object] = {
        "SPACECRAFT_ID": "LANDSAT_8", "SENSOR_ID": "OLI_TIRS", "WRS_TYPE": 2, "WRS_PATH": path, "WRS_ROW": row,
        "NADIR_OFFNADIR": "NADIR", "TARGET_WRS_PATH": path, "TARGET_WRS_ROW": row, "DATE_ACQUIRED": _Bare(date),
        "SCENE_CENTER_TIME": _STFUSE_SCENE_TIME, "STATION_ID": "LGN", "CLOUD_COVER": _Bare(f"{cloud_cover:.2f}"),
        "CLOUD_COVER_LAND": _Bare(f"{cloud_cover:.2f}"), "IMAGE_QUALITY_OLI": 9, "IMAGE_QUALITY_TIRS": 9,
        "SUN_AZIMUTH": _Bare(f"{azimuth:.8f}"), "SUN_ELEVATION": _Bare(f"{elevation:.8f}"),
        "EARTH_SUN_DISTANCE": _Bare(f"{distance:.7f}"),
    }
    projection: dict[str, object] = {
        "MAP_PROJECTION": "UTM", "DATUM": "WGS84", "ELLIPSOID": "WGS84", "UTM_ZONE": int(STFUSE_CRS[-2:]),
        "GRID_CELL_SIZE_REFLECTIVE": _Bare("30.00"), "GRID_CELL_SIZE_THERMAL": _Bare("30.00"),
        "REFLECTIVE_LINES": size, "REFLECTIVE_SAMPLES": size, "THERMAL_LINES": size, "THERMAL_SAMPLES": size,
        "ORIENTATION": "NORTH_UP",
    }
    for corner, lon, lat in zip(corners, lons, lats, strict=True):
        projection[f"CORNER_{corner}_LAT_PRODUCT"] = _Bare(f"{lat:.5f}")
        projection[f"CORNER_{corner}_LON_PRODUCT"] = _Bare(f"{lon:.5f}")
    for corner, (x, y) in corners.items():
        projection[f"CORNER_{corner}_PROJECTION_X_PRODUCT"] = _Bare(f"{x:.3f}")
        projection[f"CORNER_{corner}_PROJECTION_Y_PRODUCT"] = _Bare(f"{y:.3f}")
    level2 = {"ORIGIN": contents["ORIGIN"], "LANDSAT_PRODUCT_ID": product, "PROCESSING_LEVEL": "L2SP",
              "OUTPUT_FORMAT": "GEOTIFF", "DATE_PRODUCT_GENERATED": _Bare(f"{made:%Y-%m-%d}T09:14:52Z"),
              "PROCESSING_SOFTWARE_VERSION": "LPGS_15.4.0", "ALGORITHM_SOURCE_SURFACE_REFLECTANCE": "LaSRC_1.5.0",
              "ALGORITHM_SOURCE_SURFACE_TEMPERATURE": "st_1.3.0"}
    sr: dict[str, object] = {}
    for b in sr_bands:
        sr[f"REFLECTANCE_MAXIMUM_BAND_{b}"] = _Bare("1.602213")
        sr[f"REFLECTANCE_MINIMUM_BAND_{b}"] = _Bare("-0.199972")
    for b in sr_bands:
        sr[f"QUANTIZE_CAL_MAX_BAND_{b}"] = 65535
        sr[f"QUANTIZE_CAL_MIN_BAND_{b}"] = 1
    sr.update({f"REFLECTANCE_MULT_BAND_{b}": _Bare("2.75e-05") for b in sr_bands})
    sr.update({f"REFLECTANCE_ADD_BAND_{b}": _Bare("-0.2") for b in sr_bands})
    st = {"TEMPERATURE_MAXIMUM_BAND_ST_B10": _Bare("372.999941"),
          "TEMPERATURE_MINIMUM_BAND_ST_B10": _Bare("149.003418"),
          "QUANTIZE_CAL_MAXIMUM_BAND_ST_B10": 65535, "QUANTIZE_CAL_MINIMUM_BAND_ST_B10": 1,
          "TEMPERATURE_MULT_BAND_ST_B10": _Bare("0.00341802"), "TEMPERATURE_ADD_BAND_ST_B10": _Bare("149.0")}
    level1 = {"ORIGIN": contents["ORIGIN"], "LANDSAT_SCENE_ID": scene, "LANDSAT_PRODUCT_ID": level1,
              "PROCESSING_LEVEL": "L1TP", "COLLECTION_CATEGORY": "T1", "OUTPUT_FORMAT": "GEOTIFF",
              "DATE_PRODUCT_GENERATED": _Bare(f"{made:%Y-%m-%d}T09:07:31Z"),
              **{f"FILE_NAME_BAND_{b}": f"{level1}_B{b}.TIF" for b in range(1, 12)}}
    # Level-1 TOA rescaling: same key names as the Level-2 scaling, other values; never to be used for L2 pixels
    radiance = (1.2744e-02, 1.3050e-02, 1.2025e-02, 1.0140e-02, 6.2055e-03, 1.5432e-03, 5.2016e-04, 1.1476e-02,
                2.4252e-03, 3.3420e-04, 3.3420e-04)
    rescaling: dict[str, object] = {f"RADIANCE_MULT_BAND_{b}": _Bare(f"{m:.4E}") for b, m in enumerate(radiance, 1)}
    rescaling.update({f"RADIANCE_ADD_BAND_{b}": _Bare(f"{-m * 5000.0:.5f}") for b, m in enumerate(radiance, 1)})
    rescaling.update({f"REFLECTANCE_MULT_BAND_{b}": _Bare("2.0000E-05") for b in range(1, 10)})
    rescaling.update({f"REFLECTANCE_ADD_BAND_{b}": _Bare("-0.100000") for b in range(1, 10)})
    groups = {
        "PRODUCT_CONTENTS": contents, "IMAGE_ATTRIBUTES": attributes, "PROJECTION_ATTRIBUTES": projection,
        "LEVEL2_PROCESSING_RECORD": level2, "LEVEL2_SURFACE_REFLECTANCE_PARAMETERS": sr,
        "LEVEL2_SURFACE_TEMPERATURE_PARAMETERS": st, "LEVEL1_PROCESSING_RECORD": level1,
        "LEVEL1_MIN_MAX_REFLECTANCE": {k: v for b in range(1, 10) for k, v in (
            (f"REFLECTANCE_MAXIMUM_BAND_{b}", _Bare("1.210700")),
            (f"REFLECTANCE_MINIMUM_BAND_{b}", _Bare("-0.099980")))},
        "LEVEL1_RADIOMETRIC_RESCALING": rescaling,
        "LEVEL1_THERMAL_CONSTANTS": {
            "K1_CONSTANT_BAND_10": _Bare("774.8853"), "K2_CONSTANT_BAND_10": _Bare("1321.0789"),
            "K1_CONSTANT_BAND_11": _Bare("480.8883"), "K2_CONSTANT_BAND_11": _Bare("1201.1442")},
        "LEVEL1_PROJECTION_PARAMETERS": {
            "MAP_PROJECTION": "UTM", "DATUM": "WGS84", "ELLIPSOID": "WGS84", "UTM_ZONE": int(STFUSE_CRS[-2:]),
            "GRID_CELL_SIZE_REFLECTIVE": _Bare("30.00"), "ORIENTATION": "NORTH_UP",
            "RESAMPLING_OPTION": "CUBIC_CONVOLUTION"},
    }
    return _odl(groups)


def _modis_granule(date: str, tile: tuple[int, int]) -> str:
    """``MCD43A4.AYYYYDDD.hHHvVV.061.YYYYDDDHHMMSS``: the NBAR of ``date`` (its retrieval window's centre)."""
    import datetime as dt

    day = dt.date.fromisoformat(date)
    made = day + dt.timedelta(days=_STFUSE_PROCESSING_DAYS)
    return f"MCD43A4.A{day:%Y%j}.h{tile[0]:02d}v{tile[1]:02d}.061.{made:%Y%j}052712"


def _modis_tags(date: str, granule: str, tile: tuple[int, int]) -> dict[str, str]:
    import datetime as dt

    day = dt.date.fromisoformat(date)
    made = day + dt.timedelta(days=_STFUSE_PROCESSING_DAYS)
    return {"SHORTNAME": "MCD43A4", "VERSIONID": "61", "LOCALGRANULEID": f"{granule}.hdf",
            "LONGNAME": "MODIS/Terra+Aqua BRDF/Albedo Nadir BRDF-Adjusted Ref Daily L3 Global - 500m",
            "RANGEBEGINNINGDATE": (day - dt.timedelta(days=8)).isoformat(), "RANGEBEGINNINGTIME": "00:00:00.000000",
            "RANGEENDINGDATE": (day + dt.timedelta(days=8)).isoformat(), "RANGEENDINGTIME": "23:59:59.999999",
            "PRODUCTIONDATETIME": f"{made:%Y-%m-%d}T05:27:12.000Z", "HORIZONTALTILENUMBER": str(tile[0]),
            "VERTICALTILENUMBER": str(tile[1]), "CHARACTERISTICBINSIZE": repr(MODIS_500M_PIXEL_M),
            "ASSOCIATEDPLATFORMSHORTNAME": "Terra, Aqua",
            "DESCRIPTION": "synthetic (spatialx sample --task stfuse)"}


def _write_band(path: Path, data: np.ndarray, transform: Affine, crs, nodata: float | None,
                descriptions: tuple[str, ...], tags: Mapping[str, object] | None = None, scale: float | None = None,
                band_tags: tuple[Mapping[str, object], ...] = (), tiled: bool = True) -> None:
    """A deflate GeoTIFF of ``data`` (rows, cols) or (bands, rows, cols), tiled 256 x 256 when large enough."""
    import rasterio

    data = data if data.ndim == 3 else data[None]
    integer = np.issubdtype(data.dtype, np.integer)
    options = {"tiled": True, "blockxsize": 256, "blockysize": 256} if tiled and min(data.shape[1:]) >= 256 else {}
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=data.dtype, crs=crs, transform=transform, nodata=nodata, compress="deflate",
                       predictor=2 if integer else 3, **options) as dst:
        dst.write(data)
        dst.descriptions = descriptions
        if scale is not None:
            dst.scales, dst.offsets = (scale,) * data.shape[0], (0.0,) * data.shape[0]
        if tags:
            dst.update_tags(**tags)
        for k, extra in enumerate(band_tags, start=1):
            dst.update_tags(k, **extra)


def stfuse_command(paths: Mapping[str, Path], output: str | PathLike[str] = "stfuse_starfm.tif",
                   method: str = "starfm", relative_to: Path | None = None) -> str:
    """The ``spatialx stfuse`` command line that predicts :data:`STFUSE_PREDICT` from a scene's files (the
    :func:`write_stfuse_sample` result), paths relative to ``relative_to`` when given."""
    import shlex

    def arg(path: Path) -> str:
        return shlex.quote(str(path.relative_to(relative_to) if relative_to is not None else path))

    fine = " ".join(f"--fine {arg(paths[k])}" for k in ("fine_t1", "fine_t3"))
    coarse = " ".join(f"--coarse {arg(paths[k])}" for k in ("coarse_t1", "coarse_t2", "coarse_t3"))
    return (f"spatialx stfuse {shlex.quote(str(output))} {fine} {coarse} --predict {STFUSE_PREDICT} -m {method} "
            f"--fine-bands {','.join(STFUSE_BANDS)}")


def _prepare_product_folders(out: Path, folders: list[Path], files: Mapping[str, Path], overwrite: bool) -> None:
    """Before a sample writes sensor product folders: each holds nothing but the sample's own files (a reader would
    take any other file for part of the product), no output exists unless ``overwrite``; then create them."""
    for folder in folders:
        if folder.exists() and not folder.is_dir():
            raise OutputError("not a directory", path=folder, hint="remove it: a product folder of the scene goes here")
        if folder.is_dir():
            ours = {p.name for p in files.values() if p.parent == folder}
            foreign = sorted(p.name for p in folder.iterdir() if p.name not in ours and not p.name.startswith("."))
            if foreign:
                raise OutputError(f"the product folder holds other files ({', '.join(foreign[:3])})", path=folder,
                                  hint="a reader would take them for part of the product: remove them, or write the "
                                       "scene into another directory")
    for path in files.values():
        if path.exists() and not overwrite:
            raise OutputError("output exists", path=path, hint="pass --overwrite")
    try:
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output directory: {exc.strerror}", path=out) from None


def write_stfuse_sample(out_dir: str | PathLike[str], size: int = STFUSE_SIZE, seed: int = 0,
                        overwrite: bool = False) -> dict[str, Path]:
    """Write a synthetic Landsat 8 + MODIS scene for spatio-temporal fusion into ``out_dir``.

    A 30 m landscape of crop parcels (spring crops greening up, winter cereals ripening, pasture, vineyards, fallow),
    forest, a river, a lake and a town at the three dates :data:`STFUSE_DATES` (t1 < t2 < t3). Its phenology is per
    parcel and varies across the scene (the season runs later in the north, unevenly), and one patch of forest
    (:data:`STFUSE_CHANGE_SHAPE`, not aligned on MODIS pixels) is cleared to bare soil on :data:`STFUSE_CUT_DATE`,
    between t1 and t2. Reflectance is a mixture of the :data:`ENDMEMBERS` spectra (continued to 2500 nm) integrated
    against each band's response, times a brightness texture, with 1 % per-date pixel noise. Files (``size`` x
    ``size`` Landsat pixels, 64 to 2048, odd sizes allowed):

    * ``fine_t1``, ``fine_t3``: Landsat 8 Collection 2 Level-2 scene folders ``LC08_L2SP_196030_<date>_..._02_T1/``
      at t1 and t3 (UTM 31N, 30 m): ``_SR_B1.TIF`` .. ``_SR_B7.TIF`` (uint16 DN = (reflectance + 0.2) / 2.75e-5),
      ``_ST_B10.TIF``, ``_QA_PIXEL.TIF`` (clear or water; a few cloud pixels, bright in SR, ringed by dilated cloud,
      at t3 only) and ``_MTL.txt`` in the USGS ODL layout with the Level-2 scaling and the (never applicable)
      Level-1 rescaling;
    * ``coarse_t1``, ``coarse_t2``, ``coarse_t3``: one folder per date holding an MCD43A4 v061 granule as band
      GeoTIFFs ``MCD43A4.AYYYYDDD.hHHvVV.061.<production>_B01.TIF`` .. ``_B07.TIF`` (int16, scale 0.0001, nodata
      32767) with their quality files ``_B01qa.TIF`` .. (uint8, 0: full inversion; 255 fill) on a window of the
      global sinusoidal 500 m grid that covers the Landsat footprint with a margin; each band is
      ``STFUSE_COARSE_GAIN`` x the mean of the truth over the pixel's ground footprint (the truth's 30 m pixels whose
      centres fall inside it; the matching Landsat band's truth, band 5 the spectra's at 1240 nm) +
      ``STFUSE_COARSE_OFFSET``;
    * ``reference`` (``reference.tif``): the truth at t2 on the Landsat grid, float32 reflectance, bands
      :data:`STFUSE_BANDS`;
    * ``summary`` (``sample.json``): the files, dates, grids, the cleared patch and the command to run.

    The same arguments give the same files. Existing files are refused unless ``overwrite``, and so are product
    folders holding other files (a reader would take them for part of the product); everything is written under
    temporary names and renamed at the end. About 1 s at the default size; the largest (2048 px) takes about 15 s
    and 1.3 GB. Returns the paths by role.
    """
    import json

    from spatialx.io.modis import SINUSOIDAL
    from spatialx.io.outputs import staged

    out = Path(out_dir)
    size = _check_int(size, "size", out)
    if not STFUSE_MIN_SIZE <= size <= STFUSE_MAX_SIZE:
        raise SpatialxError(f"size {size}: an stfuse scene's side is {STFUSE_MIN_SIZE} to {STFUSE_MAX_SIZE} Landsat "
                            "pixels", path=out, hint=f"e.g. --size {STFUSE_SIZE} (9 km, about 19 MODIS pixels)")
    seed = _check_int(seed, "seed", out)
    if seed < 0:
        raise SpatialxError(f"seed {seed}: must be 0 or more", path=out)
    if out.exists() and not out.is_dir():
        raise OutputError("not a directory", path=out, hint="give a directory to write the scene into")
    grids = stfuse_grids(size)
    t1, t2, t3 = STFUSE_DATES
    folders = {"fine_t1": out / _landsat_ids(t1)[0], "fine_t3": out / _landsat_ids(t3)[0]}
    granules = {f"coarse_t{i}": _modis_granule(date, grids.tile) for i, date in enumerate(STFUSE_DATES, start=1)}
    folders.update({role: out / granule for role, granule in granules.items()})
    files: dict[str, Path] = {}
    for role in ("fine_t1", "fine_t3"):
        product = folders[role].name
        for band in (*(f"SR_B{b}" for b in range(1, 8)), "ST_B10", "QA_PIXEL"):
            files[f"{role}/{band}"] = folders[role] / f"{product}_{band}.TIF"
        files[f"{role}/MTL"] = folders[role] / f"{product}_MTL.txt"
    for role, granule in granules.items():
        for b in range(1, 8):
            files[f"{role}/B{b:02d}"] = folders[role] / f"{granule}_B{b:02d}.TIF"
            files[f"{role}/B{b:02d}qa"] = folders[role] / f"{granule}_B{b:02d}qa.TIF"
    files["reference"] = out / "reference.tif"
    files["summary"] = out / "sample.json"
    _prepare_product_folders(out, list(folders.values()), files, overwrite)

    land = _stfuse_landscape(grids, seed)
    emat = stfuse_band_tables()
    footprints = _Footprints(grids)
    ox, oy = grids.offset
    crop = (slice(oy, oy + size), slice(ox, ox + size))
    truth_index = {name: i for i, name in enumerate(_STFUSE_TRUTH_BANDS)}
    landsat = get_sensor("landsat_c2l2")
    r0, r1, c0, c1 = land.change
    clouds = land.clouds[crop]
    with staged(files) as temps:
        cloud_counts: dict[str, int] = {}
        for i, date in enumerate(STFUSE_DATES, start=1):
            truth = _stfuse_truth(land, emat, date)
            # the coarse sensor: footprint means, its own gain and offset, int16 DN; every pixel a full inversion
            role = f"coarse_t{i}"
            tags = _modis_tags(date, granules[role], grids.tile)
            qa = np.zeros(grids.coarse_shape, np.uint8)
            for b, source in _STFUSE_MODIS_SOURCES.items():
                mean = footprints.mean(truth[truth_index[source]])
                value = STFUSE_COARSE_GAIN * mean + STFUSE_COARSE_OFFSET
                dn = np.clip(np.rint(value / _MODIS_SCALE), 0, 32766).astype(np.int16)
                name = f"Nadir_Reflectance_Band{b}"
                _write_band(temps[f"{role}/B{b:02d}"], dn, grids.coarse, SINUSOIDAL, _MODIS_FILL, (name,),
                            {**tags, "long_name": name, "units": "reflectance, no units", "scale_factor": "0.0001",
                             "add_offset": "0", "_FillValue": str(_MODIS_FILL), "valid_range": "0, 32766"},
                            scale=_MODIS_SCALE, tiled=False)
                qa_name = f"BRDF_Albedo_Band_Mandatory_Quality_Band{b}"
                _write_band(temps[f"{role}/B{b:02d}qa"], qa, grids.coarse, SINUSOIDAL, _MODIS_QA_FILL, (qa_name,),
                            {**tags, "long_name": qa_name, "units": "concatenated flags",
                             "_FillValue": str(_MODIS_QA_FILL), "valid_range": "0, 254"}, tiled=False)
            fine_truth = truth[:, crop[0], crop[1]]
            if date == STFUSE_PREDICT:
                reference = np.ascontiguousarray(fine_truth[[truth_index[b] for b in STFUSE_BANDS]])
                layers = [landsat.layer(name) for name in STFUSE_BANDS]
                _write_band(temps["reference"], reference, grids.fine, STFUSE_CRS, None, STFUSE_BANDS,
                            {"sensor": "landsat_c2l2", "units": "reflectance", "date": date, "seed": seed,
                             "generator": "spatialx.sample", "task": "stfuse"},
                            band_tags=tuple({"wavelength": layer.center_nm, "wavelength_units": "nm",
                                             "fwhm": layer.fwhm_nm} for layer in layers))
                continue
            role = "fine_t1" if date == t1 else "fine_t3"
            cloudy = clouds if date == t3 else np.zeros_like(clouds)
            water = land.water[crop] >= 0.5
            qa_pixel = np.where(water, _QA_WATER, _QA_CLEAR).astype(np.uint16)
            qa_pixel[cloudy == 1] = _QA_DILATED
            qa_pixel[cloudy == 2] = _QA_CLOUD
            cloud_reflectance = {1: 0.46, 2: 0.44, 3: 0.43, 4: 0.42, 5: 0.42, 6: 0.33, 7: 0.24}
            for b in range(1, 8):
                sr = fine_truth[truth_index[f"SR_B{b}"]].copy()
                sr[cloudy == 1] += np.float32(0.03)  # thin cloud edge
                sr[cloudy == 2] = cloud_reflectance[b]
                dn = np.clip(np.rint((sr - _LANDSAT_SR_ADD) / _LANDSAT_SR_MULT), *_LANDSAT_SR_DN).astype(np.uint16)
                _write_band(temps[f"{role}/SR_B{b}"], dn, grids.fine, STFUSE_CRS, 0, (f"SR_B{b}",))
            # surface temperature: warm bare soil and roofs, cool vegetation and water, a cold cloud top
            ndvi = ((fine_truth[truth_index["SR_B5"]] - fine_truth[truth_index["SR_B4"]])
                    / np.maximum(fine_truth[truth_index["SR_B5"]] + fine_truth[truth_index["SR_B4"]], 1e-3))
            kelvin = 296.0 + 0.15 * (_doy(date) - 121) + 14.0 * (0.6 - ndvi) - 9.0 * land.water[crop]
            kelvin = np.where(cloudy == 2, 268.0, kelvin)
            st = np.clip(np.rint((kelvin - _LANDSAT_ST_ADD) / _LANDSAT_ST_MULT), 293, 65535).astype(np.uint16)
            _write_band(temps[f"{role}/ST_B10"], st, grids.fine, STFUSE_CRS, 0, ("ST_B10",))
            _write_band(temps[f"{role}/QA_PIXEL"], qa_pixel, grids.fine, STFUSE_CRS, None, ("QA_PIXEL",))
            cover = 100.0 * float((cloudy > 0).mean())
            temps[f"{role}/MTL"].write_text(_landsat_mtl(date, grids, cover), encoding="utf-8")
            if date == t3:
                cloud_counts = {"cloud_pixels": int((cloudy == 2).sum()),
                                "dilated_cloud_pixels": int((cloudy == 1).sum())}
        paths = {**folders, "reference": files["reference"], "summary": files["summary"]}
        rel = {role: str(path.relative_to(out)) for role, path in paths.items()}
        summary = {
            "task": "stfuse", "generator": "spatialx.sample.write_stfuse_sample", "size": size, "seed": seed,
            "dates": {"t1": t1, "t2": t2, "t3": t3}, "predict": STFUSE_PREDICT,
            "fine": {t1: rel["fine_t1"], t3: rel["fine_t3"]},
            "coarse": {date: rel[f"coarse_t{i}"] for i, date in enumerate(STFUSE_DATES, start=1)},
            "reference": rel["reference"], "bands": list(STFUSE_BANDS),
            "fine_grid": {"crs": STFUSE_CRS, "transform": list(grids.fine)[:6], "width": size, "height": size},
            "coarse_grid": {"crs": _SINUSOIDAL_PROJ4, "transform": list(grids.coarse)[:6],
                            "width": grids.coarse_shape[1], "height": grids.coarse_shape[0],
                            "tile": f"h{grids.tile[0]:02d}v{grids.tile[1]:02d}"},
            "ratio": MODIS_500M_PIXEL_M / STFUSE_GSD_M,
            "coarse_radiometry": {"gain": STFUSE_COARSE_GAIN, "offset": STFUSE_COARSE_OFFSET,
                                  "bands": {f"B{b:02d}": source for b, source in _STFUSE_MODIS_SOURCES.items()}},
            "land_cover_change": {"from": "forest", "to": "bare soil", "date": STFUSE_CUT_DATE,
                                  "window": {"col_off": c0 - ox, "row_off": r0 - oy, "width": c1 - c0,
                                             "height": r1 - r0}},
            "clouds": {"date": t3, **cloud_counts},
            "command": stfuse_command(paths, relative_to=out),
            "note": "run the command in this directory",
        }
        temps["summary"].write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return paths


# ------------------------------------------------------------------------------------------------------------
# polsar: a quad-pol SLC scene at 20 m and its HH single-pol SLC at 10 m

POLSAR_SIZE = 256
"""Default side of the polsar scene in single-pol (10 m) pixels: 2.56 km, the quad-pol 128 px at 20 m."""

POLSAR_MIN_SIZE, POLSAR_MAX_SIZE = 64, 2048
POLSAR_GSD_M = 10.0
"""Single-pol pixel (m); the quad-pol pixel is :data:`POLSAR_RATIO` times larger."""

POLSAR_RATIO = 2
POLSAR_CRS = DEFAULT_CRS
POLSAR_POLARISATIONS = ("HH", "HV", "VH", "VV")
POLSAR_C3_BANDS = ("C11", "C12_re", "C12_im", "C13_re", "C13_im", "C22", "C23_re", "C23_im", "C33")

POLSAR_HV_VH_COHERENCE = 0.9
"""Coherence of S_HV and S_VH (reciprocal up to system noise, as in real data)."""

POLSAR_EDGE_M = 5.0
"""Width (m) of the logistic transition between two regions: boundaries are smooth curves, not pixel steps."""


class PolsarRegion(IntEnum):
    """Codes of the polsar scene's ``regions.tif``: each 10 m pixel's dominant scattering mechanism."""

    SURFACE = 1  # fields: odd bounce
    VOLUME = 2  # forest: random volume
    DOUBLE_BOUNCE = 3  # town: dihedral (wall-ground)


@dataclass(frozen=True)
class PolsarMechanism:
    """One region's scattering, in linear power (sigma nought): ``hh``, ``vv``, ``hv`` the mean ``|S|^2``, ``rho`` the
    magnitude and ``phase_deg`` the phase of the HH/VV correlation coefficient; HV uncorrelated with the co-pols
    (reflection symmetry). ``texture`` the standard deviation of the log of the multiplicative texture."""

    hh: float
    vv: float
    hv: float
    rho: float
    phase_deg: float
    texture: float

    def c3(self) -> np.ndarray:
        """The expected C3 (3 x 3 complex) of the reader's lexicographic basis ``[S_HH, sqrt(2) S_X, S_VV]``,
        ``S_X = (S_HV + S_VH) / 2``: ``C22 = 2 <|S_X|^2> = (1 + gamma) <|S_HV|^2>`` (gamma the HV/VH coherence)."""
        c13 = self.rho * math.sqrt(self.hh * self.vv) * complex(math.cos(math.radians(self.phase_deg)),
                                                                 math.sin(math.radians(self.phase_deg)))
        c22 = (1.0 + POLSAR_HV_VH_COHERENCE) * self.hv
        return np.array([[self.hh, 0, c13], [0, c22, 0], [np.conj(c13), 0, self.vv]], dtype=np.complex128)


POLSAR_MECHANISMS: dict[PolsarRegion, PolsarMechanism] = {
    # Bragg-like rough surface: VV > HH, in phase, cross-pol 18 dB below HH
    PolsarRegion.SURFACE: PolsarMechanism(hh=0.04, vv=0.06, hv=0.04 * 10 ** -1.8, rho=0.75, phase_deg=0.0,
                                          texture=0.25),
    # random volume: HH = VV, weakly correlated, cross-pol 8 dB below the co-pols
    PolsarRegion.VOLUME: PolsarMechanism(hh=0.10, vv=0.10, hv=0.10 * 10 ** -0.8, rho=0.3, phase_deg=0.0,
                                         texture=0.3),
    # dihedral: strong, HH > VV, HH and VV 180 degrees out of phase, cross-pol 16 dB below HH
    PolsarRegion.DOUBLE_BOUNCE: PolsarMechanism(hh=0.8, vv=0.4, hv=0.8 * 10 ** -1.6, rho=0.7, phase_deg=180.0,
                                                texture=0.5),
}
"""The designed scattering of each region (see :class:`PolsarMechanism`)."""


@dataclass(frozen=True)
class _PolsarLayout:
    size: int
    seed: int
    forest: tuple[float, float, float]  # boundary level, wiggle amplitude, phase
    town: tuple[float, float, float, float]  # centre u, centre v, radius, phase


def _polsar_layout(size: int, seed: int) -> _PolsarLayout:
    rng = np.random.default_rng([seed, 0x9015A5])
    u = rng.random(6)
    return _PolsarLayout(size, seed, forest=(0.34 + 0.04 * u[0], 0.06, 2 * math.pi * u[1]),
                         town=(0.58 + 0.14 * u[2], 0.68 + 0.08 * u[3], 0.2, 2 * math.pi * u[4]))


def _polsar_key(seed: int, k: int) -> int:
    return int(_mix32(np.array([(seed * 0x9E3779B1 + k * 0x85EBCA6B) & 0xFFFFFFFF], np.uint32))[0])


def _polsar_fields(lay: _PolsarLayout, pixel_m: float, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Region weights (3, rows, cols) float64 (surface, volume, double bounce; they sum to 1) and the texture
    (rows, cols) of a grid of ``pixel_m`` pixels sharing the scene origin: pure functions of ground position, so the
    10 m and 20 m grids sample one landscape."""
    step = pixel_m / POLSAR_GSD_M  # pixel centres in 10 m units
    xs = ((np.arange(cols) + 0.5) * step).astype(np.float32)
    ys = ((np.arange(rows) + 0.5) * step).astype(np.float32)
    side = lay.size
    u = (xs / side).astype(np.float64)[None, :]
    v = (ys / side).astype(np.float64)[:, None]
    to_edge = side * POLSAR_GSD_M / POLSAR_EDGE_M  # normalised distance -> logistic argument
    def warp(k: int, cell: float) -> np.ndarray:  # smooth noise, zero mean, standard deviation about 0.155
        return _smooth_noise(xs, ys, cell, _polsar_key(lay.seed, k)).astype(np.float64) - 0.5

    level, amp, phase = lay.forest
    boundary = level + amp * np.sin(2 * np.pi * 1.3 * u + phase) + 0.12 * warp(1, 0.25 * side)
    volume = 1.0 / (1.0 + np.exp(-np.clip((boundary - v) * to_edge, -60, 60)))
    cu, cv, radius, phase = lay.town
    du, dv = u - cu, (v - cv) * 1.2
    theta = np.arctan2(dv, du)
    edge = radius * (1.0 + 0.18 * np.sin(3 * theta + phase) + 0.5 * warp(2, 0.12 * side))
    double = 1.0 / (1.0 + np.exp(-np.clip((edge - np.hypot(du, dv)) * to_edge, -60, 60)))
    volume = volume * (1.0 - double)
    weights = np.stack([1.0 - volume - double, volume, double])
    # texture: lognormal, fine (6 px) and coarse (24 px) scales, each region its own strength
    g = (warp(3, 6.0) + 0.7 * warp(4, 24.0)) * 5.3  # about unit standard deviation
    sigma = np.tensordot(np.array([POLSAR_MECHANISMS[r].texture for r in PolsarRegion]), weights, axes=1)
    texture = np.exp(sigma * g - 0.5 * sigma**2)
    return weights, texture


def _polsar_covariance(weights: np.ndarray, texture: np.ndarray) -> np.ndarray:
    """Expected C3 per pixel (rows, cols, 3, 3) complex128: the region mixture of the designed C3, times texture."""
    mats = np.stack([POLSAR_MECHANISMS[r].c3() for r in PolsarRegion])  # (3, 3, 3)
    return np.einsum("krc,kij->rcij", weights, mats) * texture[..., None, None]


def _c3_channels(cov: np.ndarray) -> np.ndarray:
    """(rows, cols, 3, 3) Hermitian -> (9, rows, cols) float32 in :data:`POLSAR_C3_BANDS` order."""
    return np.stack([cov[..., 0, 0].real, cov[..., 0, 1].real, cov[..., 0, 1].imag, cov[..., 0, 2].real,
                     cov[..., 0, 2].imag, cov[..., 1, 1].real, cov[..., 1, 2].real, cov[..., 1, 2].imag,
                     cov[..., 2, 2].real]).astype(np.float32)


def _circular_gaussian(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Unit-variance complex circular Gaussian samples."""
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) * math.sqrt(0.5)


def _polsar_quad_slc(cov: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Single-look scattering vectors ``k = L z`` (``L`` the Cholesky factor of each pixel's C3), split into the
    four channels: ``S_HV = S_X + d``, ``S_VH = S_X - d`` with ``d`` independent, so their mean is ``S_X`` exactly
    and their coherence :data:`POLSAR_HV_VH_COHERENCE`."""
    rows, cols = cov.shape[:2]
    chol = np.linalg.cholesky(cov.reshape(-1, 3, 3))
    z = _circular_gaussian(rng, (rows * cols, 3, 1))
    k = (chol @ z)[..., 0].T.reshape(3, rows, cols)
    sx = k[1] / math.sqrt(2.0)
    gamma = POLSAR_HV_VH_COHERENCE
    d_power = cov[..., 1, 1].real / 2.0 * (1.0 - gamma) / (1.0 + gamma)
    d = np.sqrt(d_power) * _circular_gaussian(rng, (rows, cols))
    return {"HH": k[0], "HV": sx + d, "VH": sx - d, "VV": k[2]}


def _iq(slc: np.ndarray) -> np.ndarray:
    return np.stack([slc.real, slc.imag]).astype(np.float32)


def polsar_command(paths: Mapping[str, Path], output: str | PathLike[str] = "polsar_bicubic.tif",
                   method: str = "bicubic", relative_to: Path | None = None, side_products: bool = True) -> str:
    """The ``spatialx polsar`` command line that fuses a polsar scene (the :func:`write_polsar_sample` result),
    with the Pauli RGB and the H/A/alpha decomposition next to ``output``; paths relative to ``relative_to``."""
    import shlex

    def arg(path: str | PathLike[str]) -> str:
        path = Path(path)
        return shlex.quote(str(path.relative_to(relative_to) if relative_to is not None else path))

    out = Path(output)
    command = f"spatialx polsar {arg(paths['quad'])} {arg(paths['single'])} {shlex.quote(str(out))} -m {method}"
    if side_products:
        command += (f" --pauli {shlex.quote(str(out.with_name('pauli.tif')))}"
                    f" --decomposition {shlex.quote(str(out.with_name('haalpha.tif')))}")
    return command


def write_polsar_sample(out_dir: str | PathLike[str], size: int = POLSAR_SIZE, seed: int = 0,
                        overwrite: bool = False) -> dict[str, Path]:
    """Write a synthetic quad-pol SLC scene and its HH single-pol SLC at twice the resolution into ``out_dir``.

    A landscape of three scattering mechanisms (:data:`POLSAR_MECHANISMS`): fields (surface, odd bounce: HH and VV
    in phase, HV 18 dB below HH), a forest across the top of the scene (random volume: HV 8 dB below the co-pols,
    HH/VV correlation 0.3) and a town (double bounce: strong, HH and VV 180 degrees out of phase), with curved,
    noise-warped boundaries (a :data:`POLSAR_EDGE_M` logistic transition, the covariances mixed across it) and a
    lognormal multiplicative texture at two scales. Each pixel's single-look scattering vector is drawn as complex
    circular Gaussian with the pixel's expected covariance (Cholesky factor), HV and VH reciprocal up to an
    independent difference (coherence :data:`POLSAR_HV_VH_COHERENCE`). Regions and texture are functions of ground
    position, so both grids see one landscape; the speckle of the two acquisitions is independent. Files (UTM 31N,
    one origin; ``size`` 10 m pixels a side, 64 to 2048, odd sizes allowed):

    * ``quad`` (``quad/``): ``slc_HH.tif``, ``slc_HV.tif``, ``slc_VH.tif``, ``slc_VV.tif``, 2-band float32 (real,
      imaginary) SLC GeoTIFFs on the 20 m grid (``ceil(size / 2)`` pixels a side: for odd sizes it reaches 10 m past
      the single-pol footprint), read by :mod:`spatialx.io.radarsat2` as C3 (multilooked on the fly);
    * ``single`` (``single_hh.tif``): the HH SLC at 10 m, 2-band float32 (real, imaginary), read as its intensity;
    * ``reference`` (``reference_c3.tif``): the expected C3 at 10 m (9 bands float32, :data:`POLSAR_C3_BANDS`): the
      region mixture of the designed covariances times the texture, noise-free, in the reader's lexicographic basis;
    * ``regions`` (``regions.tif``): uint8 :class:`PolsarRegion` of each 10 m pixel (the largest weight);
    * ``summary`` (``sample.json``): files, grids, mechanisms, region fractions and the command to run.

    The same arguments give the same files. Existing files are refused unless ``overwrite``, and so is a ``quad/``
    folder holding other files; everything is written under temporary names and renamed at the end. About 0.2 s at
    the default size; the largest (2048 px) takes about 10 s and 1.5 GB. Returns the paths by role.
    """
    import json

    from spatialx.io.outputs import staged

    out = Path(out_dir)
    size = _check_int(size, "size", out)
    if not POLSAR_MIN_SIZE <= size <= POLSAR_MAX_SIZE:
        raise SpatialxError(f"size {size}: a polsar scene's side is {POLSAR_MIN_SIZE} to {POLSAR_MAX_SIZE} "
                            "single-pol pixels", path=out,
                            hint=f"e.g. --size {POLSAR_SIZE} (2.56 km at 10 m; quad-pol at 20 m)")
    seed = _check_int(seed, "seed", out)
    if seed < 0:
        raise SpatialxError(f"seed {seed}: must be 0 or more", path=out)
    if out.exists() and not out.is_dir():
        raise OutputError("not a directory", path=out, hint="give a directory to write the scene into")
    quad_dir = out / "quad"
    files: dict[str, Path] = {f"quad/{p}": quad_dir / f"slc_{p}.tif" for p in POLSAR_POLARISATIONS}
    files.update({"single": out / "single_hh.tif", "reference": out / "reference_c3.tif",
                  "regions": out / "regions.tif", "summary": out / "sample.json"})
    _prepare_product_folders(out, [quad_dir], files, overwrite)

    lay = _polsar_layout(size, seed)
    x0, y0 = DEFAULT_ORIGIN
    fine = Affine(POLSAR_GSD_M, 0.0, x0, 0.0, -POLSAR_GSD_M, y0)
    coarse_m = POLSAR_GSD_M * POLSAR_RATIO
    coarse = Affine(coarse_m, 0.0, x0, 0.0, -coarse_m, y0)
    low = -(-size // POLSAR_RATIO)
    tags = {"generator": "spatialx.sample", "task": "polsar", "seed": seed, "units": "linear power"}
    with staged(files) as temps:
        # quad-pol at 20 m
        weights, texture = _polsar_fields(lay, coarse_m, low, low)
        slc = _polsar_quad_slc(_polsar_covariance(weights, texture), np.random.default_rng([seed, 1]))
        for pol in POLSAR_POLARISATIONS:
            _write_band(temps[f"quad/{pol}"], _iq(slc[pol]), coarse, POLSAR_CRS, None, ("real", "imaginary"),
                        {**tags, "polarisation": pol, "representation": "SLC", "units": "amplitude (sigma0)"})
        del slc
        # single-pol HH and the truth at 10 m
        weights, texture = _polsar_fields(lay, POLSAR_GSD_M, size, size)
        cov = _polsar_covariance(weights, texture)
        rng = np.random.default_rng([seed, 2])
        hh = np.sqrt(cov[..., 0, 0].real) * _circular_gaussian(rng, (size, size))
        _write_band(temps["single"], _iq(hh), fine, POLSAR_CRS, None, ("real", "imaginary"),
                    {**tags, "polarisation": "HH", "representation": "SLC", "units": "amplitude (sigma0)"})
        _write_band(temps["reference"], _c3_channels(cov), fine, POLSAR_CRS, None, POLSAR_C3_BANDS,
                    {**tags, "representation": "C3", "basis": "lexicographic [HH, sqrt(2) (HV + VH) / 2, VV]"})
        labels = (np.argmax(weights, axis=0) + 1).astype(np.uint8)
        _write_band(temps["regions"], labels, fine, POLSAR_CRS, 0, ("region",),
                    {**tags, **{f"region_{r.value}": r.name.lower() for r in PolsarRegion}})
        paths = {"quad": quad_dir, "single": files["single"], "reference": files["reference"],
                 "regions": files["regions"], "summary": files["summary"]}
        rel = {role: str(path.relative_to(out)) for role, path in paths.items()}

        def grid(transform: Affine, side: int) -> dict:
            return {"crs": POLSAR_CRS, "transform": list(transform)[:6], "width": side, "height": side}

        summary = {
            "task": "polsar", "generator": "spatialx.sample.write_polsar_sample", "size": size, "seed": seed,
            "quad": rel["quad"], "quad_files": {p: f"{rel['quad']}/slc_{p}.tif" for p in POLSAR_POLARISATIONS},
            "single": rel["single"], "single_polarisation": "HH", "reference": rel["reference"],
            "regions": rel["regions"], "c3_bands": list(POLSAR_C3_BANDS),
            "slc_layout": "2 bands float32: real, imaginary", "units": "linear power (sigma nought)",
            "quad_grid": grid(coarse, low), "single_grid": grid(fine, size), "ratio": POLSAR_RATIO,
            "hv_vh_coherence": POLSAR_HV_VH_COHERENCE,
            "mechanisms": {r.name.lower(): {"code": r.value, "hh": m.hh, "vv": m.vv, "hv": m.hv,
                                            "hv_hh_db": round(10 * math.log10(m.hv / m.hh), 2), "rho_hhvv": m.rho,
                                            "phase_hhvv_deg": m.phase_deg, "texture_log_std": m.texture}
                           for r, m in POLSAR_MECHANISMS.items()},
            "region_fractions": {r.name.lower(): round(float((labels == r.value).mean()), 4) for r in PolsarRegion},
            "command": polsar_command(paths, relative_to=out),
            "note": "run the command in this directory",
        }
        temps["summary"].write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return paths
