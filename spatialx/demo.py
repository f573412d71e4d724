"""The demo job: generate the bundled sample scenes and fuse them with every classical method and the default networks.

``python -m spatialx.demo demo-out`` (what ``make demo`` runs) writes ``demo-out/sample/`` (PAN, MS, reference) and
one COG and one NDVI (+ QGIS style) per classical pansharpening method, then the same for the default networks
(:data:`NETWORKS`: LE-Mamba and PNN with the weights bundled for 8-band sensors, no ``--weights`` given; the sample's
seed 0 is not among the scenes they were trained on), then ``demo-out/sample_hmif/`` (a PRISMA-like HE5,
Sentinel-2 band COGs, the 10 m reference) and one COG per hmif method, and prints a short table with each product's
SAM and ERGAS against the scene's reference. Then ``demo-out/sample_stfuse/`` (Landsat 8 C2 L2 at t1 and t3, MODIS
MCD43A4 at t1, t2 and t3, the Landsat-band truth at t2) and one COG per stfuse method predicting t2 (``starfm`` with
its uncertainty layer), with a second table of each prediction's errors against that truth. Last
``demo-out/sample_polsar/`` (a quad-pol SLC scene at 20 m, its HH SLC at 10 m, the expected C3 at 10 m) and one C3 COG
per polsar method (``bicubic`` with its Pauli RGB and H/A/alpha decomposition), with a third table of the
reduced-resolution protocol on the quad-pol scene.
"""

from __future__ import annotations

import sys
from pathlib import Path

SENSOR = "wv3"
SIZE = 512
#: Networks run with their bundled weights on the pansharpening sample (LE-Mamba takes ~30-45 s on 2 cores).
NETWORKS = ("lemamba", "pnn")
HMIF_SIZE = 192  # Sentinel-2 10 m pixels per side: 64 PRISMA pixels
HMIF_BANDS = 60
HMIF_SENSORS = {"hs": "prisma_l2d", "ms": "s2_l2a"}
STFUSE_SIZE = 240  # Landsat 30 m pixels per side: 7.2 km, about 16 MODIS pixels
STFUSE_METHODS = ("exp", "no-change", "coarse-diff", "starfm", "estarfm")
STFUSE_WINDOW = 51  # starfm/estarfm moving window (fine pixels): the paper's 1500 m at 30 m
STFUSE_SCORES = ("RMSE", "bias", "SAM", "ERGAS", "CC", "SSIM")
POLSAR_SIZE = 256  # single-pol 10 m pixels per side; the quad-pol is 128 px at 20 m
POLSAR_METHODS = ("nearest", "bilinear", "bicubic", "guided")
POLSAR_SCORES = ("d_R", "RMSE", "span_PSNR", "dH", "dalpha")


def _scores(reference: Path, product: Path, ratio: int, max_value: float | None) -> tuple[str, str]:
    from spatialx.evaluate import evaluate_compare

    scores = evaluate_compare(reference, product, ratio=ratio, max_value=max_value)
    return f"{scores['SAM']:.2f}", f"{scores['ERGAS']:.2f}"


def main(out_dir: str = "demo-out") -> int:
    from rich.console import Console
    from rich.table import Table

    import spatialx
    from spatialx.methods import list_methods
    from spatialx.sample import write_hmif_sample, write_sample
    from spatialx.sensors import get_sensor
    from spatialx.tasks.pansharpen import pansharpen

    console = Console()
    if not console.is_terminal:  # piped (make demo in CI, a log): 80 columns would truncate the file names
        console = Console(width=160)
    root = Path(out_dir)
    (root / "sample").mkdir(parents=True, exist_ok=True)
    paths = write_sample(root / "sample", sensor=SENSOR, size=SIZE, seed=0, overwrite=True)
    table = Table(title=f"spatialx demo -> {root}/ (pansharpen: {SENSOR} {SIZE} px; hmif: {HMIF_BANDS}-band "
                        f"PRISMA-like + Sentinel-2, {HMIF_SIZE} px)")
    for column in ("task", "method", "output", "NDVI", "SAM (deg)", "ERGAS", "seconds"):
        table.add_column(column)
    max_value = get_sensor(SENSOR).max_value
    for info in list_methods("pansharpen"):
        if info.kind != "classical":
            continue
        output, ndvi = root / f"pansharpened_{info.name}.tif", root / f"ndvi_{info.name}.tif"
        result = pansharpen(paths["pan"], paths["ms"], output, SENSOR, info.name, tile=256, workers=2,
                            overwrite=True, ndvi=ndvi)
        table.add_row("pansharpen", info.name, output.name, ndvi.name,
                      *_scores(paths["reference"], output, 4, max_value), f"{result.seconds:.2f}")
    skipped = []
    for name in NETWORKS:  # no weights given: each network loads the weights bundled for 8-band sensors
        output, ndvi = root / f"pansharpened_{name}.tif", root / f"ndvi_{name}.tif"
        try:
            result = pansharpen(paths["pan"], paths["ms"], output, SENSOR, name, tile=256, workers=2,
                                overwrite=True, ndvi=ndvi)
        except Exception as exc:
            why = _unavailable(exc) or (str(exc) if "no bundled weights" in str(exc) else None)
            if why is None:
                raise
            skipped.append(f"{name}: skipped ({why})")
            continue
        label = f"{name} (bundled {Path(result.params['weights']).stem})"
        table.add_row("pansharpen", label, output.name, ndvi.name,
                      *_scores(paths["reference"], output, 4, max_value), f"{result.seconds:.2f}")
    if skipped:
        table.caption = "; ".join(skipped)

    # Hyperspectral + multispectral: whatever classical methods are registered for hmif when the demo runs.
    hmif = write_hmif_sample(root / "sample_hmif", size=HMIF_SIZE, bands=HMIF_BANDS, seed=0, overwrite=True)
    for info in list_methods("hmif"):
        if info.kind != "classical":
            continue
        output = root / f"hmif_{info.name}.tif"
        result = spatialx.fuse("hmif", {"hs": hmif["hs"], "ms": hmif["ms"]}, output, method=info.name,
                               sensor=HMIF_SENSORS, tile=256, workers=2, overwrite=True)
        ratio = int(result.params["ratio"])
        table.add_row("hmif", info.name, output.name, "-", *_scores(hmif["reference"], output, ratio, None),
                      f"{result.seconds:.2f}")
    console.print(table)
    console.print(_stfuse(root))
    console.print(_polsar(root))
    return 0


def _unavailable(exc: BaseException) -> str | None:
    """Why a method cannot run here (not implemented, a dependency missing), or None for a real error."""
    from spatialx.errors import MethodError

    if isinstance(exc, NotImplementedError | ModuleNotFoundError):
        return f"{type(exc).__name__}: {exc}"
    text = str(exc)
    if isinstance(exc, MethodError) and any(k in text.lower() for k in ("not implemented", "does not import")):
        return text
    return None


def _stfuse_scores(reference: Path, product: Path, change: dict[str, int], ratio: float) -> dict[str, float]:
    """Errors of a prediction against the truth: whole image and the cleared patch (``RMSE change``)."""
    import inspect

    import numpy as np
    import rasterio

    from spatialx.evaluate import evaluate_compare

    with rasterio.open(reference) as src:
        truth = src.read().astype(np.float64)
    with rasterio.open(product) as src:
        fused = src.read(list(range(1, truth.shape[0] + 1))).astype(np.float64)
    error = fused - truth
    scores: dict[str, float] = {}
    if "task" in inspect.signature(evaluate_compare).parameters:
        found = evaluate_compare(reference, product, ratio=ratio, max_value=None, task="stfuse")
        scores.update({key: float(found[key]) for key in STFUSE_SCORES if found.get(key) is not None})
    else:  # evaluate_compare without task="stfuse": the errors computed here, NaN (no prediction) left out
        valid = np.isfinite(error).all(axis=0)
        e, t, f = error[:, valid], truth[:, valid], fused[:, valid]
        cos = (t * f).sum(axis=0) / np.maximum(np.linalg.norm(t, axis=0) * np.linalg.norm(f, axis=0), 1e-12)
        band_rmse = np.sqrt((e ** 2).mean(axis=1))
        scores.update({"RMSE": float(np.sqrt((e ** 2).mean())), "bias": float(e.mean()),
                       "SAM": float(np.degrees(np.arccos(np.clip(cos, -1, 1))).mean()),
                       "ERGAS": float(100.0 / ratio * np.sqrt(np.mean((band_rmse / t.mean(axis=1)) ** 2))),
                       "CC": float(np.mean([np.corrcoef(t[b], f[b])[0, 1] for b in range(t.shape[0])]))})
    rows = slice(change["row_off"], change["row_off"] + change["height"])
    cols = slice(change["col_off"], change["col_off"] + change["width"])
    scores["RMSE change"] = float(np.sqrt(np.nanmean(error[:, rows, cols] ** 2)))
    return scores


def _stfuse(root: Path):
    """Write the stfuse sample and predict its middle date with every stfuse method; returns the scores table."""
    import json

    from rich.table import Table

    from spatialx.methods import list_methods
    from spatialx.sample import STFUSE_BANDS, STFUSE_PREDICT, write_stfuse_sample
    from spatialx.tasks.stfuse import stfuse

    paths = write_stfuse_sample(root / "sample_stfuse", size=STFUSE_SIZE, seed=0, overwrite=True)
    summary = json.loads(paths["summary"].read_text(encoding="utf-8"))
    registered = {info.name for info in list_methods("stfuse")}
    table = Table(title=f"stfuse: Landsat 8 ({STFUSE_SIZE} px, 30 m) at {summary['dates']['t1']} and "
                        f"{summary['dates']['t3']} + MODIS MCD43A4 -> {STFUSE_PREDICT}, against its truth "
                        f"(reflectance; starfm/estarfm window {STFUSE_WINDOW} px; RMSE change: the forest patch "
                        "cleared in between)")
    columns = ("method", "output", *STFUSE_SCORES, "RMSE change", "seconds")
    for column in columns:
        table.add_column(column)
    notes = []
    for method in STFUSE_METHODS:
        if method not in registered:
            notes.append(f"{method}: not registered, skipped")
            continue
        output = root / f"stfuse_{method}.tif"
        extra: dict = {}
        if method in ("starfm", "estarfm"):
            extra["method_options"] = {"window": STFUSE_WINDOW}
        if method == "starfm":
            extra["layers"] = {"uncertainty": root / f"stfuse_{method}_uncertainty.tif"}
        try:
            result = stfuse(output, [paths["fine_t1"], paths["fine_t3"]],
                            [paths["coarse_t1"], paths["coarse_t2"], paths["coarse_t3"]], STFUSE_PREDICT,
                            method=method, fine_bands=",".join(STFUSE_BANDS), workers=2, overwrite=True, **extra)
        except Exception as exc:
            why = _unavailable(exc)
            if why is None:
                raise
            notes.append(f"{method}: skipped ({why})")
            continue
        scores = _stfuse_scores(paths["reference"], output, summary["land_cover_change"]["window"], summary["ratio"])
        table.add_row(method, output.name, *(f"{scores[k]:.4f}" if k in scores else "-" for k in STFUSE_SCORES),
                      f"{scores['RMSE change']:.4f}", f"{result.seconds:.2f}")
    if notes:
        table.caption = "; ".join(notes)
    return table


def _polsar(root: Path):
    """Write the polsar sample, fuse it with every polsar method and score the reduced-resolution protocol on its
    quad-pol scene; returns the table."""
    from rich.table import Table

    from spatialx.evaluate import evaluate_reduced_polsar
    from spatialx.methods import list_methods
    from spatialx.sample import write_polsar_sample
    from spatialx.tasks.polsar import polsar

    paths = write_polsar_sample(root / "sample_polsar", size=POLSAR_SIZE, seed=0, overwrite=True)
    registered = {info.name for info in list_methods("polsar")}
    methods = [m for m in POLSAR_METHODS if m in registered]
    notes = [f"{m}: not registered, skipped" for m in POLSAR_METHODS if m not in registered]
    seconds: dict[str, float] = {}
    outputs: dict[str, str] = {}
    for method in list(methods):
        output = root / f"polsar_{method}.tif"
        extra = {"pauli": root / "polsar_pauli.tif", "decomposition": root / "polsar_haalpha.tif"} \
            if method == "bicubic" else {}
        try:
            result = polsar(paths["quad"], paths["single"], output, method=method, workers=2, overwrite=True, **extra)
        except Exception as exc:
            why = _unavailable(exc)
            if why is None:
                raise
            notes.append(f"{method}: skipped ({why})")
            methods.remove(method)
            continue
        seconds[method] = result.seconds
        outputs[method] = ", ".join([output.name, *(Path(p).name for p in extra.values())])
    scores: dict[str, dict] = {}
    for method in methods:  # one at a time: a method the protocol cannot score leaves the others' scores
        try:
            scores[method] = dict(evaluate_reduced_polsar(paths["quad"], [method])[method])
        except ValueError as exc:  # e.g. d_R of a C3 that is PSD but singular at some pixels
            notes.append(f"{method}: reduced-resolution scores failed ({exc})")
            scores[method] = {}
    table = Table(title=f"polsar: quad-pol SLC ({POLSAR_SIZE // 2} px, 20 m) + HH SLC ({POLSAR_SIZE} px, 10 m) -> C3 "
                        "at 10 m; scores: reduced-resolution protocol on the quad-pol scene (its 5 x 5 C3 averaged "
                        "2 x 2, HH intensity at 20 m)")
    for column in ("method", "output", *POLSAR_SCORES, "seconds"):
        table.add_column(column)
    for method in methods:
        found = scores[method]
        table.add_row(method, outputs[method],
                      *(f"{found[k]:.4g}" if found.get(k) is not None else "-" for k in POLSAR_SCORES),
                      f"{seconds[method]:.2f}")
    if notes:
        table.caption = "; ".join(notes)
    return table


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
