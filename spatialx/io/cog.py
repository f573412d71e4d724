"""Cloud-Optimised GeoTIFF assembled from already-compressed tiles, without decompressing or compressing again.

GDAL's COG driver turns any source into a COG by reading every pixel and compressing it anew, which is the second
compression of everything a streamed writer has compressed once already. Here the full-resolution image and each
overview level are separate tiled GeoTIFFs that GDAL wrote with the final compression; :func:`assemble_cog` lays
their directories and tiles out the way GDAL's COG driver does (the `COG layout`_) and copies the compressed tiles
byte for byte:

* header, then GDAL's "ghost" structural metadata, then every IFD (full resolution first, overviews largest first)
  with its tag values and tile index arrays;
* then the tiles, smallest overview first and full resolution last, row-major, each preceded by its size as a
  little-endian uint32 and followed by its last four bytes again (``BLOCK_LEADER``/``BLOCK_TRAILER``).

GDAL reports such a file as ``LAYOUT=COG``, and its own ``validate_cloud_optimized_geotiff.py`` accepts it. The tags
come from the files GDAL wrote (georeferencing, ``GDAL_METADATA``, nodata, sample format, predictor); only tile
offsets and byte counts are new, and ``NewSubfileType`` marks the overviews.

.. _COG layout: https://gdal.org/en/stable/drivers/raster/cog.html#file-format-details
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NEW_SUBFILE_TYPE = 254
REDUCED_IMAGE = 1
PHOTOMETRIC = 262
EXTRA_SAMPLES = 338
TILE_OFFSETS = 324
TILE_BYTE_COUNTS = 325
#: Tags an overview directory does not repeat: GeoTIFF georeferencing and GDAL's dataset metadata.
MAIN_ONLY_TAGS = frozenset({33550, 33922, 34264, 34735, 34736, 34737, 42112})

SHORT, LONG, LONG8 = 3, 4, 16
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8}
_INDEX_DTYPES = {SHORT: "<u2", LONG: "<u4", LONG8: "<u8"}

_GHOST_ITEMS = ("LAYOUT=IFDS_BEFORE_DATA\nBLOCK_ORDER=ROW_MAJOR\nBLOCK_LEADER=SIZE_AS_UINT4\n"
                "BLOCK_TRAILER=LAST_4_BYTES_REPEATED\nKNOWN_INCOMPATIBLE_EDITION=NO\n ")
GHOST = f"GDAL_STRUCTURAL_METADATA_SIZE={len(_GHOST_ITEMS):06d} bytes\n{_GHOST_ITEMS}".encode("ascii")
LEADER, TRAILER = 4, 4
_CLASSIC_LIMIT = 2**32 - 1


class TiffLayoutError(ValueError):
    """A file is not the kind of tiled GeoTIFF this module assembles from."""


@dataclass(frozen=True)
class Entry:
    """One IFD entry: its TIFF type, value count and value bytes (little-endian, as in the file)."""

    type: int
    count: int
    value: bytes


@dataclass
class Directory:
    """One image file directory of a tiled TIFF: its entries and where its tiles lie in the file."""

    path: Path
    entries: dict[int, Entry]
    offsets: np.ndarray
    byte_counts: np.ndarray


def read_directory(path: Path) -> Directory:
    """The first IFD of the little-endian, tiled, classic or Big TIFF ``path``."""
    with open(path, "rb") as handle:
        head = handle.read(16)
        if head[:2] != b"II":
            raise TiffLayoutError(f"{path}: not a little-endian TIFF")
        version = struct.unpack_from("<H", head, 2)[0]
        if version == 42:
            big, first = False, struct.unpack_from("<I", head, 4)[0]
        elif version == 43:
            big, first = True, struct.unpack_from("<Q", head, 8)[0]
        else:
            raise TiffLayoutError(f"{path}: not a TIFF (version {version})")
        handle.seek(first)
        count_format, entry_format, inline = ("<Q", "<HHQ8s", 8) if big else ("<H", "<HHI4s", 4)
        (count,) = struct.unpack(count_format, handle.read(struct.calcsize(count_format)))
        size = struct.calcsize(entry_format)
        raw = handle.read(size * count)
        entries: dict[int, Entry] = {}
        for index in range(count):
            tag, kind, values, field = struct.unpack_from(entry_format, raw, index * size)
            if kind not in _TYPE_SIZES:
                raise TiffLayoutError(f"{path}: tag {tag} has unknown TIFF type {kind}")
            length = _TYPE_SIZES[kind] * values
            if length <= inline:
                value = field[:length]
            else:
                handle.seek(struct.unpack("<Q" if big else "<I", field)[0])
                value = handle.read(length)
            entries[tag] = Entry(kind, values, value)
    if TILE_OFFSETS not in entries or TILE_BYTE_COUNTS not in entries:
        raise TiffLayoutError(f"{path}: not a tiled TIFF")
    offsets, counts = (_index(entries[tag], path) for tag in (TILE_OFFSETS, TILE_BYTE_COUNTS))
    return Directory(path, entries, offsets, counts)


def _index(entry: Entry, path: Path) -> np.ndarray:
    if entry.type not in _INDEX_DTYPES:
        raise TiffLayoutError(f"{path}: tile index of TIFF type {entry.type}")
    return np.frombuffer(entry.value, dtype=_INDEX_DTYPES[entry.type]).astype(np.uint64)


def _with_index(entries: dict[int, Entry], offsets: np.ndarray, counts: np.ndarray, big: bool) -> dict[int, Entry]:
    kind, dtype = (LONG8, "<u8") if big else (LONG, "<u4")
    entries = dict(entries)
    entries[TILE_OFFSETS] = Entry(kind, len(offsets), offsets.astype(dtype).tobytes())
    entries[TILE_BYTE_COUNTS] = Entry(kind, len(counts), counts.astype(dtype).tobytes())
    return entries


def _directory_size(entries: dict[int, Entry], big: bool) -> int:
    """Bytes of an IFD and the values that do not fit in its entries (each kept on a word boundary)."""
    inline = 8 if big else 4
    size = (8 + 20 * len(entries) + 8) if big else (2 + 12 * len(entries) + 4)
    for entry in entries.values():
        if len(entry.value) > inline:
            size += len(entry.value) + len(entry.value) % 2
    return size


def _encode_directory(entries: dict[int, Entry], at: int, next_ifd: int, big: bool) -> bytes:
    inline = 8 if big else 4
    head = (struct.pack("<Q", len(entries)) if big else struct.pack("<H", len(entries)))
    extra_at = at + len(head) + (20 if big else 12) * len(entries) + (8 if big else 4)
    fields, extra = [], bytearray()
    for tag in sorted(entries):
        entry = entries[tag]
        if len(entry.value) <= inline:
            field = entry.value.ljust(inline, b"\0")
        else:
            field = struct.pack("<Q" if big else "<I", extra_at + len(extra))
            extra += entry.value + b"\0" * (len(entry.value) % 2)
        fields.append(struct.pack("<HHQ" if big else "<HHI", tag, entry.type, entry.count) + field)
    tail = struct.pack("<Q" if big else "<I", next_ifd)
    return head + b"".join(fields) + tail + bytes(extra)


def assemble_cog(base: Path, overviews: Sequence[Path], output: Path) -> None:
    """Write ``output``: the tiled GeoTIFF ``base`` with ``overviews`` (largest first) as its internal overviews, in
    COG layout. All files must share compression, predictor, tile size, bands and data type."""
    directories = [read_directory(base), *(read_directory(path) for path in overviews)]
    main = directories[0]
    shared = {tag: main.entries[tag] for tag in (PHOTOMETRIC, EXTRA_SAMPLES) if tag in main.entries}
    tag_sets = [main.entries]
    for level in directories[1:]:
        entries = {tag: entry for tag, entry in level.entries.items() if tag not in MAIN_ONLY_TAGS}
        entries.update(shared)
        entries[NEW_SUBFILE_TYPE] = Entry(LONG, 1, struct.pack("<I", REDUCED_IMAGE))
        tag_sets.append(entries)
    tiles = sum(int(np.count_nonzero(d.byte_counts)) for d in directories)
    data_bytes = sum(int(d.byte_counts.sum()) for d in directories) + (LEADER + TRAILER) * tiles
    for big in (False, True):
        start = _ifds_start(big)
        sized = [_with_index(entries, d.offsets, d.byte_counts, big) for entries, d in zip(tag_sets, directories,
                                                                                           strict=True)]
        header_bytes = start + sum(_directory_size(entries, big) for entries in sized)
        if big or header_bytes + data_bytes <= _CLASSIC_LIMIT:
            break
    # Tiles go smallest overview first, full resolution last; each tile's offset points past its leader.
    position = header_bytes
    new_offsets: list[np.ndarray] = [np.empty(0)] * len(directories)
    for index in reversed(range(len(directories))):
        counts = directories[index].byte_counts
        present = counts > 0
        steps = np.where(present, counts + LEADER + TRAILER, 0).astype(np.uint64)
        ends = position + np.cumsum(steps, dtype=np.uint64)
        new_offsets[index] = np.where(present, ends - steps + LEADER, 0).astype(np.uint64)
        position = int(ends[-1]) if len(ends) else position
    with open(output, "wb") as out:
        out.write(_header(big, start))
        out.write(GHOST)
        out.write(b"\0" * (start - out.tell()))
        at = start
        for index, (entries, directory) in enumerate(zip(tag_sets, directories, strict=True)):
            entries = _with_index(entries, new_offsets[index], directory.byte_counts, big)
            size = _directory_size(entries, big)
            next_ifd = at + size if index + 1 < len(directories) else 0
            encoded = _encode_directory(entries, at, next_ifd, big)
            out.write(encoded.ljust(size, b"\0"))
            at += size
        for index in reversed(range(len(directories))):
            _copy_tiles(directories[index], out)
        if out.tell() != position:
            raise TiffLayoutError(f"{output}: wrote {out.tell()} bytes where the layout planned {position}")


def _ifds_start(big: bool) -> int:
    start = (16 if big else 8) + len(GHOST)
    return start + start % 2


def _header(big: bool, first_ifd: int) -> bytes:
    if big:
        return b"II" + struct.pack("<HHHQ", 43, 8, 0, first_ifd)
    return b"II" + struct.pack("<HI", 42, first_ifd)


def _copy_tiles(directory: Directory, out) -> None:
    with open(directory.path, "rb") as source:
        for offset, count in zip(directory.offsets.tolist(), directory.byte_counts.tolist(), strict=True):
            if count == 0:
                continue
            source.seek(offset)
            tile = source.read(count)
            if len(tile) != count:
                raise TiffLayoutError(f"{directory.path}: a tile ends past the end of the file")
            out.write(struct.pack("<I", count))
            out.write(tile)
            out.write(tile[-TRAILER:].rjust(TRAILER, b"\0"))
