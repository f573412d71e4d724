"""One self-contained HTML page that summarises a batch of runs: per product a card with its quicklooks.

The page has inline CSS only (no script, no fonts or images from elsewhere), so it opens from a file, a mail
attachment or an archive the same way. Its thumbnails are PNG files in a sibling folder ``<page stem>_quicklooks/``,
linked relatively: the page and that folder move together. Every text on the page is escaped. An image that cannot
be previewed (missing, unreadable, a sensor product folder) gets a caption that says why, and the page is written
anyway.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from os import PathLike
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rasterio._err import CPLE_BaseError
from rasterio.errors import RasterioError

from spatialx import __version__
from spatialx.errors import OutputError, SpatialxError
from spatialx.io.outputs import atomic_write_text
from spatialx.products.quicklook import quicklook_png

__all__ = ["STATUSES", "SummaryEntry", "quicklook_folder", "write_summary_html"]

STATUSES = ("done", "skipped", "failed")
THUMBNAIL_SIDE = 256


@dataclass
class SummaryEntry:
    """One run of a batch, as the summary shows it."""

    name: str
    task: str
    method: str
    status: str
    reason: str | None = None
    seconds: float | None = None
    product: Path | None = None
    #: Role label -> input file, in the order the thumbnails are shown.
    inputs: Mapping[str, Path] = field(default_factory=dict)
    #: Quality index name -> value (e.g. ``{"D_lambda": 0.02, "D_s": 0.05, "HQNR": 0.93}``).
    quality: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"entry {self.name!r}: status must be one of {', '.join(STATUSES)}, not {self.status!r}")


def quicklook_folder(path: str | PathLike[str]) -> Path:
    """Where :func:`write_summary_html` puts the thumbnails of the page ``path``."""
    path = Path(path)
    return path.with_name(f"{path.stem}_quicklooks")


_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; background: #f6f6f4; }
h1 { font-size: 1.4em; margin: 0 0 0.2em; }
.meta { color: #666; margin: 0 0 1.2em; }
.card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 0.8em 1em; margin: 0 0 1em; }
.card h2 { font-size: 1.1em; margin: 0 0 0.4em; }
.status { display: inline-block; padding: 0 0.5em; border-radius: 3px; font-size: 0.85em; color: #fff; }
.done { background: #2e7d32; } .skipped { background: #8d8d8d; } .failed { background: #c62828; }
.reason { color: #c62828; margin: 0.3em 0; }
.skipped-reason { color: #555; margin: 0.3em 0; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.1em 1em; margin: 0.3em 0; }
dt { color: #666; } dd { margin: 0; }
table { border-collapse: collapse; margin: 0.4em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.15em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.thumbs { display: flex; flex-wrap: wrap; gap: 0.8em; margin-top: 0.5em; }
figure { margin: 0; width: 256px; }
figure img { display: block; width: 256px; height: auto; image-rendering: pixelated; background: #000; }
figcaption { font-size: 0.8em; color: #444; margin-top: 0.2em; overflow-wrap: anywhere; }
.nopreview { width: 256px; height: 64px; display: flex; align-items: center; justify-content: center;
             background: #eee; color: #666; font-size: 0.8em; text-align: center; }
""".strip()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:60] or "x"


def _one_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {rest:02d} s"


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            return str(value)
    return f"{value:.4g}" if math.isfinite(value) else str(value)


def _preview(source: Path, target: Path) -> str | None:
    """Write the thumbnail of ``source`` to ``target``; the reason it could not, or None."""
    try:
        quicklook_png(source, target, THUMBNAIL_SIDE)
    except OutputError:
        raise  # the page's own folder cannot be written: that fails the page, not one thumbnail
    except SpatialxError as exc:
        return _one_line(exc.message)
    except (RasterioError, CPLE_BaseError, OSError, ValueError, MemoryError) as exc:
        return _one_line(str(exc)) or type(exc).__name__
    return None


def _figure(folder: Path, file_name: str, source: Path | None, caption: str) -> str:
    if source is None:
        return ""
    source = Path(source)
    reason = _preview(source, folder / file_name)
    label = f"{caption}: {source.name}"
    if reason is not None:
        return (f'<figure><div class="nopreview">no preview</div><figcaption>{escape(label)} &mdash; '
                f"no preview ({escape(reason)})</figcaption></figure>")
    href = f"{quote(folder.name)}/{quote(file_name)}"
    return (f'<figure><img src="{escape(href)}" alt="{escape(label)}">'
            f"<figcaption>{escape(label)}</figcaption></figure>")


def _quality_table(quality: Mapping[str, Any] | None) -> str:
    if not quality:
        return ""
    rows = "".join(f'<tr><td>{escape(str(name))}</td><td class="num">{escape(_number(value))}</td></tr>'
                   for name, value in quality.items())
    return f"<table><thead><tr><th>index</th><th>value</th></tr></thead><tbody>{rows}</tbody></table>"


def _card(index: int, entry: SummaryEntry, folder: Path) -> str:
    stem = f"{index:03d}_{_slug(entry.name)}"
    parts = [f'<section class="card"><h2>{escape(entry.name)} '
             f'<span class="status {entry.status}">{escape(entry.status)}</span></h2>']
    reason = _one_line(entry.reason)
    if reason:
        css = "reason" if entry.status == "failed" else "skipped-reason"
        parts.append(f'<p class="{css}">{escape(reason)}</p>')
    parts.append(f"<dl><dt>task</dt><dd>{escape(entry.task)}</dd><dt>method</dt><dd>{escape(entry.method)}</dd>"
                 f"<dt>run time</dt><dd>{escape(_duration(entry.seconds))}</dd></dl>")
    parts.append(_quality_table(entry.quality))
    figures = [_figure(folder, f"{stem}_in{number}_{_slug(str(label))}.png", path, str(label))
               for number, (label, path) in enumerate(entry.inputs.items())]
    if entry.status == "done":
        figures.append(_figure(folder, f"{stem}_product.png", entry.product, "product"))
    figures = [figure for figure in figures if figure]
    if figures:
        parts.append(f'<div class="thumbs">{"".join(figures)}</div>')
    parts.append("</section>")
    return "".join(parts)


def write_summary_html(entries: Sequence[SummaryEntry], path: Path, title: str) -> Path:
    """Write the summary page ``path`` of ``entries`` (and their thumbnails, see :func:`quicklook_folder`).

    Per entry: name, status (a failed or skipped run's one-line reason), task, method, run time, its quality
    indices, and thumbnails of its inputs and (for a run that is done) its product. Files are written atomically;
    the thumbnails of an earlier page of the same name are replaced. Returns ``path``.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError("output directory does not exist", path=path.parent, hint="create it first")
    folder = quicklook_folder(path)
    try:
        folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the quicklook folder ({exc.strerror or exc})", path=folder) from None
    counts = {status: sum(entry.status == status for entry in entries) for status in STATUSES}
    made = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    tally = ", ".join(f"{count} {status}" for status, count in counts.items() if count) or "no runs"
    cards = "\n".join(_card(index, entry, folder) for index, entry in enumerate(entries))
    page = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{escape(title)}</title>\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n"
            f"<h1>{escape(title)}</h1>\n"
            f'<p class="meta">{escape(tally)} &middot; spatialx {escape(__version__)} &middot; {escape(made)}</p>\n'
            f"{cards}\n</body>\n</html>\n")
    atomic_write_text(path, page)
    return path
