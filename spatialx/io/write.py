"""The one raster writer: windows stream into a temporary GeoTIFF that becomes a Cloud-Optimised GeoTIFF.

The COG layout (header and directories, then overview tiles, then full-resolution tiles) cannot be written
incrementally, so windows go into a tiled GeoTIFF next to the output first, compressed as the COG will be: they are
gathered into whole blocks, so that GDAL compresses each block once, in its own threads, while the tiles are fused.
The overview levels are averaged from each block as it completes (:class:`OverviewPyramid`), or, for wide and
resumable outputs, built window by window from the finished file (:mod:`spatialx.io.overviews`); on success the
compressed tiles of all of it are copied as they are into the COG layout (:mod:`spatialx.io.cog`: nothing is
compressed twice) and renamed over the output in one step.
A failure at any point leaves no partial output behind, and an existing output is replaced only when the caller
asked for it. The temporary files are those of :mod:`spatialx.io.outputs`: registered, so that SIGINT/SIGTERM and
interpreter exit remove them too.
"""

from __future__ import annotations

import hashlib
import json
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio._err import CPLE_BaseError
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from spatialx.errors import OutputError
from spatialx.grid import Grid
from spatialx.io.cog import assemble_cog
from spatialx.io.outputs import TEMP_MARK, TEMP_PREFIX, OutputPlan, discard, new_temporary, publish
from spatialx.io.overviews import build_overviews, downsample_mean, level_profile, overview_sizes

#: In the name of every temporary file a writer creates (kept for callers that look for leftovers).
TMP_MARK = TEMP_MARK
#: What GDAL raises through rasterio: its own hierarchy, and CPLE_* errors that are not RasterioError.
_GDAL_ERRORS = (RasterioError, CPLE_BaseError, OSError)
# GDAL's block cache defaults to 5% of RAM; a small fixed ceiling keeps peak memory independent of scene size
# (64 MiB: measured no slower than 256 MiB at 8192 px, and 400 MiB less peak RSS).
GDAL_CACHE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class BandInfo:
    """Per-band metadata written as the band description, wavelength tags and colour interpretation."""

    name: str
    center_nm: float | None = None
    fwhm_nm: float | None = None
    #: GDAL colour interpretation, a rasterio ``ColorInterp`` name ("red", "green", "blue", "gray", ...): tells GDAL
    #: and viewers which bands make the true-colour view (see :func:`spatialx.products.style.default_rgb`). None
    #: is "undefined" when another band has a colour, else GDAL's default. ("yellow" is the CMYK channel, not a
    #: sensor's yellow band.)
    color: str | None = None

    def __post_init__(self) -> None:
        if self.color is not None and self.color not in ColorInterp.__members__:
            raise ValueError(f"band {self.name!r}: unknown colour interpretation {self.color!r}; expected one of "
                             f"{', '.join(m.name for m in ColorInterp)}")


#: Deflate level of every output. Measured on an 8-band 4096 px uint16 WorldView-3 product (the scene of
#: benchmarks/bench_pansharpen.py) with the predictor, on one thread: level 1 compresses 6.6x faster than GDAL's
#: default level 6 (2.1 s vs 13.9 s) for a file 22 % larger (98 vs 81 MiB), still 9 % smaller than GDAL's default
#: deflate without predictor (108 MiB). Compression was half the CPU time of a classical run; ``--compress-level``
#: trades time for size.
DEFAULT_COMPRESS_LEVEL = 1
COMPRESS_LEVELS = range(1, 10)


@dataclass
class OutputSpec:
    """Everything about an output file except its pixels."""

    path: Path
    grid: Grid
    dtype: str
    bands: Sequence[BandInfo]
    nodata: float | None = None
    tags: Mapping[str, Any] = field(default_factory=dict)
    overwrite: bool = False
    cog: bool = True
    blocksize: int = 512
    #: Stored value = physical value / scale (GDAL band scale; 1 for values stored as they are).
    scale: float = 1.0
    #: Stage in :func:`partial_path` (``.tif``), kept when the run fails or is interrupted, so that a rerun can
    #: resume it (:mod:`spatialx.io.journal`); removed once the output is published.
    resumable: bool = False
    #: Deflate level, 1 (fastest) to 9 (smallest).
    compress_level: int = DEFAULT_COMPRESS_LEVEL


def partial_path(output: str | PathLike[str], suffix: str) -> Path:
    """Where a resumable run of ``output`` stages its pixels (``.tif``) and its journal (``.json``): a hidden name
    next to it, the same on every run (a short digest of the output's name, whatever its length)."""
    output = Path(output)
    digest = hashlib.sha256(output.name.encode()).hexdigest()[:12]
    return output.with_name(f"{TEMP_PREFIX}{digest}.partial{suffix}")


def block_size_for(bands: int) -> int:
    """The COG tile side: 512 px, 128 px for many-band products (a pixel-interleaved 512 px tile of a 230-band
    cube is 241 MB before compression, and GDAL holds several while it writes)."""
    return 512 if bands <= 32 else 128


def check_output_path(path: str | PathLike[str], overwrite: bool) -> Path:
    """Fail early, before any work, if ``path`` cannot be (re)written: one output of any kind, with no inputs to
    compare it with. Kept for existing callers; a run with inputs or several outputs uses
    :class:`~spatialx.io.outputs.OutputPlan` directly."""
    return OutputPlan((), overwrite=overwrite).add(path, what="output", kind="sidecar")


def compression_options(dtype: str, workers: int = 1, level: int = DEFAULT_COMPRESS_LEVEL) -> dict[str, Any]:
    """GTiff creation options of every file a writer stages: deflate at ``level`` with the predictor GDAL's COG
    driver picks (horizontal differencing for integers, floating-point for reals), compressed in ``workers``
    threads; blocks that hold only nodata are not stored."""
    if level not in COMPRESS_LEVELS:
        raise ValueError(f"deflate levels are 1 to 9, got {level}")
    predictor = 3 if np.dtype(dtype).kind == "f" else 2
    return {"compress": "DEFLATE", "predictor": predictor, "zlevel": int(level), "num_threads": max(1, workers),
            "sparse_ok": True}


def gdal_env(workers: int = 1) -> rasterio.Env:
    """The GDAL settings every spatialx read and write runs under."""
    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES, GDAL_NUM_THREADS=max(1, workers),
                        GDAL_TIFF_INTERNAL_MASK=True)


def _tag_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


class BlockGather:
    """Windows of an output gathered into its whole blocks, so that each block is compressed once.

    A window written straight into a compressed GeoTIFF is compressed with whatever of its blocks is there, and read
    back, decompressed and compressed again for every later window that shares a block. Here a block is handed on
    once all of its pixels have arrived (windows do not overlap, so counting pixels is enough); meanwhile it waits in
    memory, which for row-major tile order is at most a strip of blocks across the scene. So that memory does not
    grow with the scene's width, blocks waiting beyond ``budget`` bytes are spilled (:meth:`spill`: written as they
    are, oldest first) and, when their next pixels arrive, started again from the file's pixels (``read``): those
    blocks are compressed more than once, the price of a bounded memory on very wide scenes.
    """

    def __init__(self, bands: int, height: int, width: int, block: int, dtype: str, fill: float,
                 budget: int | None = None):
        self.bands, self.height, self.width, self.block = bands, height, width, block
        self.dtype, self.fill = np.dtype(dtype), fill
        self.budget = budget
        #: Rows above this are in the file already (a resumed run): blocks across it start from the file's pixels.
        self.kept_above = 0
        self._waiting: dict[tuple[int, int], tuple[np.ndarray, list[int]]] = {}  # buffer, pixels still missing
        self._waiting_bytes = 0
        self._spilled: dict[tuple[int, int], int] = {}  # in the file as they were, pixels still missing
        #: How many times a waiting block was spilled (a measure of the rewriting it costs).
        self.spills = 0

    def _window(self, block_row: int, block_col: int) -> Window:
        row, col = block_row * self.block, block_col * self.block
        return Window(col, row, min(self.block, self.width - col), min(self.block, self.height - row))

    def add(self, data: np.ndarray, window: Window,
            read: Callable[[Window], np.ndarray]) -> Iterator[tuple[np.ndarray, Window]]:
        """Take ``data`` at ``window``; yield each block it completes, with the block's window."""
        row0, col0 = int(window.row_off), int(window.col_off)
        row1, col1 = row0 + int(window.height), col0 + int(window.width)
        b = self.block
        for block_row in range(row0 // b, (row1 - 1) // b + 1):
            for block_col in range(col0 // b, (col1 - 1) // b + 1):
                target = self._window(block_row, block_col)
                t_row, t_col = int(target.row_off), int(target.col_off)
                r0, r1 = max(row0, t_row), min(row1, t_row + int(target.height))
                c0, c1 = max(col0, t_col), min(col1, t_col + int(target.width))
                piece = data[:, r0 - row0: r1 - row0, c0 - col0: c1 - col0]
                if (r1 - r0, c1 - c0) == (int(target.height), int(target.width)):
                    yield piece, target
                    continue
                key = (block_row, block_col)
                if key not in self._waiting:
                    self._waiting[key] = self._start(key, target, read)
                    self._waiting_bytes += self._waiting[key][0].nbytes
                buffer, missing = self._waiting[key]
                buffer[:, r0 - t_row: r1 - t_row, c0 - t_col: c1 - t_col] = piece
                missing[0] -= (r1 - r0) * (c1 - c0)
                if missing[0] <= 0:
                    del self._waiting[key]
                    self._waiting_bytes -= buffer.nbytes
                    yield buffer, target

    def _start(self, key: tuple[int, int], target: Window, read: Callable[[Window], np.ndarray]
               ) -> tuple[np.ndarray, list[int]]:
        top, rows, cols = int(target.row_off), int(target.height), int(target.width)
        if key in self._spilled:
            return np.array(read(target), dtype=self.dtype), [self._spilled.pop(key)]
        kept = min(max(self.kept_above - top, 0), rows)
        if kept:
            buffer = np.array(read(target), dtype=self.dtype)
        else:
            buffer = np.full((self.bands, rows, cols), self.fill, dtype=self.dtype)
        return buffer, [(rows - kept) * cols]

    @property
    def waiting_bytes(self) -> int:
        return self._waiting_bytes

    def spill(self) -> list[tuple[np.ndarray, Window]]:
        """The oldest waiting blocks, as they are, until those still waiting fit the budget: the caller writes them
        to the file, from which :meth:`add` reads them back when their next pixels arrive."""
        spilled: list[tuple[np.ndarray, Window]] = []
        if self.budget is None:
            return spilled
        while self._waiting and self._waiting_bytes > self.budget:
            key = next(iter(self._waiting))
            buffer, missing = self._waiting.pop(key)
            self._waiting_bytes -= buffer.nbytes
            self._spilled[key] = missing[0]
            self.spills += 1
            spilled.append((buffer, self._window(*key)))
        return spilled

    def partial(self) -> list[tuple[np.ndarray, Window]]:
        """The blocks still waiting for pixels, as they are (they stay waiting)."""
        return [(buffer, self._window(*key)) for key, (buffer, _) in self._waiting.items()]


#: Most bytes of output blocks an output keeps waiting for their pixels (:class:`BlockGather`). Tiles that do not
#: coincide with the blocks (networks: 384 px cores and overlaps) leave a strip of blocks across the scene waiting,
#: 512 px high: 8-band uint16, 32 MiB at 4096 px wide, 312 MiB at 40,000 px (a full WorldView-3 scene). Beyond this,
#: the oldest are written as they are and completed from the file later.
GATHER_BUDGET = 96 * 1024 * 1024

#: Most bytes the overview levels of a streamed pyramid may hold waiting for their blocks (each level a strip of
#: blocks across its width: about twice the first level's strip in all). Wider outputs build their levels from the
#: finished file instead, window by window, so that memory stays bounded whatever the scene's width: streamed, an
#: 8-band uint16 WorldView-3 product peaked at 450 MiB at 8192 px and 558 MiB at 16384 px; read back, 324 and
#: 349 MiB, for 4-16 % more time (benchmarks/bench_pansharpen.py). 32 MiB streams such a product up to 4096 px.
PYRAMID_BUDGET = 32 * 1024 * 1024


class OverviewPyramid:
    """The overview levels of an output, built while it is written instead of read back from it afterwards.

    Each block a level completes is averaged 2 x 2 (:func:`~spatialx.io.overviews.downsample_mean`) into the next
    level, whose blocks are gathered whole in turn and written compressed to that level's file; blocks start on
    even pixels, so the means are those of the whole level at once. Each level waits for at most a strip of its
    blocks, half as wide as the level above.
    """

    def __init__(self, base: Mapping[str, Any], nodata: float | None, blocksize: int, creation: Mapping[str, Any],
                 paths: Sequence[Path]):
        self.nodata, self.paths = nodata, list(paths)
        sizes = overview_sizes(base["width"], base["height"], blocksize)
        if len(sizes) != len(self.paths):
            raise ValueError(f"{len(sizes)} overview levels need as many paths, {len(self.paths)} were given")
        fill = 0 if nodata is None else nodata
        self._datasets: list[rasterio.io.DatasetWriter] = []
        self._gathers = [BlockGather(base["count"], height, width, blocksize, base["dtype"], fill)
                         for width, height in sizes]
        try:
            for path, size in zip(self.paths, sizes, strict=True):
                self._datasets.append(rasterio.open(path, "w", **level_profile(base, size, nodata, blocksize,
                                                                                  creation)))
        except BaseException:
            self.close()
            raise

    @staticmethod
    def waiting_bytes(width: int, bands: int, dtype: str, blocksize: int) -> int:
        """What the levels of an output ``width`` pixels wide hold at most while they wait for their blocks."""
        return 2 * blocksize * -(-width // 2) * bands * np.dtype(dtype).itemsize

    def add(self, block: np.ndarray, window: Window, level: int = 0) -> None:
        """A complete block of ``level`` (0: the output itself) at ``window``: its means go one level down."""
        if level >= len(self._gathers):
            return
        mean = downsample_mean(block, self.nodata)
        below = Window(int(window.col_off) // 2, int(window.row_off) // 2, mean.shape[2], mean.shape[1])
        for piece, piece_window in self._gathers[level].add(mean, below, _nothing_kept):
            self._datasets[level].write(piece, window=piece_window)
            self.add(piece, piece_window, level + 1)

    def finish(self) -> list[Path]:
        """Write the blocks still waiting (where pixels were never written, as the fill), level by level, and close
        the levels' files; returns their paths, largest first."""
        for level, gather in enumerate(self._gathers):
            for piece, piece_window in gather.partial():
                self._datasets[level].write(piece, window=piece_window)
                self.add(piece, piece_window, level + 1)
        self.close()
        return self.paths

    def close(self) -> None:
        for dataset in self._datasets:
            with suppress(*_GDAL_ERRORS):
                dataset.close()
        self._datasets = []


def _nothing_kept(window: Window) -> np.ndarray:
    raise RuntimeError(f"an overview level has no pixels to read back at {window}")


class RasterWriter:
    """Write an output window by window; publish it atomically on :meth:`commit`.

    Use as a context manager: leaving the block normally commits, an exception discards every temporary file.
    """

    def __init__(self, spec: OutputSpec, workers: int = 1, resume: bool = False):
        self.spec = spec
        self.workers = workers
        #: Open the resumable staging file as it was left (its journal said it is this run's), not a new one.
        self.resume = resume and spec.resumable
        self.path = OutputPlan((), overwrite=spec.overwrite).add(spec.path, what="output", kind="raster")
        try:
            kind = np.dtype(spec.dtype).kind
        except TypeError:
            raise OutputError(f"unknown data type {spec.dtype!r}", path=self.path,
                              hint="give a numpy/GDAL type name, e.g. uint16 or float32") from None
        if kind not in "iuf":
            # Overview averaging and the COG's predictor handle integers and reals only; say so before any work.
            raise OutputError(f"cannot write {spec.dtype} rasters", path=self.path,
                              hint="choose an integer or floating-point --dtype, e.g. float32")
        self._dataset: rasterio.io.DatasetWriter | None = None
        #: Overviews built as blocks are written. A resumable run builds them from its staging file at the end
        #: (the rows an earlier run staged went through another process), and so does an output too wide for
        #: :data:`PYRAMID_BUDGET`.
        self._pyramid: OverviewPyramid | None = None
        self._creation = compression_options(spec.dtype, workers, spec.compress_level)
        block = min(spec.blocksize, 512)
        self._blocks = BlockGather(len(spec.bands), spec.grid.height, spec.grid.width, block, spec.dtype,
                                   0 if spec.nodata is None else spec.nodata, budget=GATHER_BUDGET)
        self._temps: list[Path] = []
        # Tile workers write while the main thread may abort (an error, SIGINT): closing the dataset under a write
        # would be a use-after-free in GDAL, and a write after abort must fail instead of touching a removed file.
        self._lock = threading.Lock()

    def _temp_path(self, suffix: str) -> Path:
        path = new_temporary(self.path, suffix)
        self._temps.append(path)
        return path

    def open(self) -> RasterWriter:
        try:
            return self._open()
        except BaseException:
            self.abort()
            raise

    def _open(self) -> RasterWriter:
        spec = self.spec
        if spec.resumable:
            staging = partial_path(self.path, ".tif")
            if self.resume:
                try:
                    self._dataset = rasterio.open(staging, "r+", num_threads=self._creation["num_threads"])
                except _GDAL_ERRORS as exc:
                    raise OutputError(f"cannot reopen the staged rows to resume ({_first_line(exc)})", path=staging,
                                      hint="delete it to start the job again") from None
                return self
        else:
            staging = self._temp_path(".tif")
        block = self._blocks.block
        profile = {
            "driver": "GTiff",
            "width": spec.grid.width,
            "height": spec.grid.height,
            "count": len(spec.bands),
            "dtype": spec.dtype,
            "crs": spec.grid.crs,
            "nodata": spec.nodata,
            "tiled": True,
            "blockxsize": block,
            "blockysize": block,
            "interleave": "pixel",
            "bigtiff": "IF_SAFER",
            **self._creation,
        }
        if spec.grid.crs is not None or not spec.grid.transform.is_identity:
            # An identity transform without CRS is how GDAL reports "not georeferenced": write none at all.
            profile["transform"] = spec.grid.transform
        try:
            # "w+": readable too, so that blocks spilled beyond the gather budget can be read back and completed
            self._dataset = rasterio.open(staging, "w+", **profile)
            waiting = OverviewPyramid.waiting_bytes(spec.grid.width, len(spec.bands), spec.dtype, block)
            if spec.cog and not spec.resumable and waiting <= PYRAMID_BUDGET:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", NotGeoreferencedWarning)
                    self._pyramid = OverviewPyramid(profile, spec.nodata, block, self._creation,
                                                    self._level_paths())
        except _GDAL_ERRORS as exc:
            raise OutputError(f"cannot create output ({_first_line(exc)})", path=self.path) from None
        self._write_metadata(self._dataset)
        return self

    def _write_metadata(self, dst: rasterio.io.DatasetWriter) -> None:
        spec = self.spec
        dst.descriptions = tuple(b.name for b in spec.bands)
        if spec.scale != 1.0:
            dst.scales = (spec.scale,) * len(spec.bands)
            dst.offsets = (0.0,) * len(spec.bands)
        for index, band in enumerate(spec.bands, start=1):
            if band.center_nm is None:
                continue
            dst.update_tags(index, wavelength=f"{band.center_nm:g}", wavelength_units="nm",
                            **({"fwhm": f"{band.fwhm_nm:g}"} if band.fwhm_nm else {}))
            # GDAL's standard band metadata for imagery (read by GDAL >= 3.10 and QGIS).
            dst.update_tags(index, ns="IMAGERY", CENTRAL_WAVELENGTH_UM=f"{band.center_nm / 1000:g}",
                            **({"FWHM_UM": f"{band.fwhm_nm / 1000:g}"} if band.fwhm_nm else {}))
        if any(band.color is not None for band in spec.bands):
            # GTiff persists this without an .aux.xml: as PHOTOMETRIC=RGB when bands 1-3 are red, green, blue, else
            # as COLORINTERP items in its GDAL_METADATA tag; the VRT and COG copies in _to_cog carry it through.
            # Uncoloured bands are "undefined", since GDAL would otherwise call band 1 "gray".
            dst.colorinterp = [ColorInterp[b.color] if b.color else ColorInterp.undefined for b in spec.bands]
        if spec.tags:
            dst.update_tags(**{k: _tag_value(v) for k, v in spec.tags.items()})

    def write(self, data: np.ndarray, window: Window) -> None:
        """Write ``data`` (bands, rows, cols), already in the output dtype, at ``window``. Windows must not overlap:
        a block goes to the file once all of its pixels have been written."""
        with self._lock:
            if self._dataset is None:
                raise RuntimeError("RasterWriter.write called before open() or after commit()/abort()")
            for block, block_window in self._blocks.add(data, window, self._read_block):
                self._dataset.write(block, window=block_window)
                if self._pyramid is not None:
                    self._pyramid.add(block, block_window)
            for block, block_window in self._blocks.spill():
                self._dataset.write(block, window=block_window)

    def _read_block(self, window: Window) -> np.ndarray:
        assert self._dataset is not None
        return self._dataset.read(window=window)

    def keep_rows_above(self, row: int) -> None:
        """A resumed run rewrites nothing above ``row``: blocks across it start from what the file holds there."""
        self._blocks.kept_above = row

    def _write_partial_blocks(self, dataset: rasterio.io.DatasetWriter, final: bool = False) -> None:
        for block, block_window in self._blocks.partial():
            dataset.write(block, window=block_window)
            if final and self._pyramid is not None:
                self._pyramid.add(block, block_window)

    def flush(self) -> None:
        """Put everything written so far on disk (a resumable run's checkpoint): blocks not yet complete are written
        as they are (and again once complete), and since GDAL writes its cached blocks when the dataset closes, it is
        closed and reopened."""
        with self._lock:
            if self._dataset is None:
                raise RuntimeError("RasterWriter.flush called before open() or after commit()/abort()")
            self._write_partial_blocks(self._dataset)
            name = self._dataset.name
            self._dataset.close()
            self._dataset = rasterio.open(name, "r+", num_threads=self._creation["num_threads"])

    def commit(self) -> Path:
        """Turn the staging file into the final output (COG when asked) and rename it into place."""
        with self._lock:
            dataset, self._dataset = self._dataset, None
        if dataset is None:
            raise RuntimeError("RasterWriter.commit called before open()")
        try:
            staging = Path(dataset.name)
            self._write_partial_blocks(dataset, final=True)  # only where a caller left pixels unwritten
            dataset.close()
            final = self._to_cog(staging) if self.spec.cog else staging
            publish(final, self.path)
            if self.spec.resumable:
                staging.unlink(missing_ok=True)
        except _GDAL_ERRORS as exc:
            self.abort()
            raise OutputError(f"cannot write output ({_first_line(exc)})", path=self.path) from None
        except BaseException:  # an interrupt, or a bug: no temporary file may outlive it
            self.abort()
            raise
        self._cleanup()
        return self.path

    def _level_paths(self) -> list[Path]:
        """Temporary files for the output's overview levels, largest first."""
        count = len(overview_sizes(self.spec.grid.width, self.spec.grid.height, self._blocks.block))
        return [self._temp_path(f".ovr{level}.tif") for level in range(1, count + 1)]

    def _to_cog(self, staging: Path) -> Path:
        blocksize = self._blocks.block
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)  # said once already, by align
            if self._pyramid is not None:
                pyramid, self._pyramid = self._pyramid, None
                levels = pyramid.finish()
            else:
                levels = self._level_paths()
                build_overviews(staging, levels, self.spec.nodata, blocksize, self._creation)
            final = self._temp_path(".cog.tif")
            assemble_cog(staging, levels, final)
        return final

    def abort(self) -> None:
        """Discard everything written so far; idempotent, and safe while tile workers are still writing."""
        with self._lock:
            dataset, self._dataset = self._dataset, None
            pyramid, self._pyramid = self._pyramid, None
            if dataset is not None:
                # The file is being thrown away; raising here would hide the error that led to the abort.
                with suppress(*_GDAL_ERRORS):
                    dataset.close()
            if pyramid is not None:
                pyramid.close()
        self._cleanup()  # a resumable staging file is not among the temporaries: it stays for the rerun

    def _cleanup(self) -> None:
        for temp in self._temps:
            discard(temp)
        self._temps.clear()

    def __enter__(self) -> RasterWriter:
        return self.open()

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def write_array(path: str | PathLike[str], data: np.ndarray, grid: Grid, bands: Sequence[BandInfo],
                nodata: float | None = None, tags: Mapping[str, Any] | None = None,
                overwrite: bool = False, cog: bool = True) -> Path:
    """Write a whole in-memory array (bands, rows, cols) through the same path as streamed outputs."""
    spec = OutputSpec(path=Path(path), grid=grid, dtype=str(data.dtype), bands=bands, nodata=nodata,
                      tags=tags or {}, overwrite=overwrite, cog=cog)
    with gdal_env(), RasterWriter(spec) as writer:
        writer.write(data, Window(0, 0, grid.width, grid.height))
    return writer.path
