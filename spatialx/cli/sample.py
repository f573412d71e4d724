"""``spatialx sample OUT_DIR``: the bundled synthetic scenes (pansharpening, hyperspectral + multispectral,
spatio-temporal fusion, or quad-pol + single-pol SAR)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spatialx.cli import options as opt

TASKS = ("pansharpen", "hmif", "stfuse", "polsar")
DEFAULT_SENSOR = "wv3"
DEFAULT_SIZE = 1024


def command(
    out_dir: Annotated[Path, typer.Argument(help="Directory to write the scene into: pan.tif, ms.tif and "
                                                 "reference.tif (pansharpen); hs.he5, hs.tif, ms/ and reference.tif "
                                                 "(hmif); Landsat and MODIS product folders, reference.tif and "
                                                 "sample.json (stfuse); quad/, single_hh.tif, reference_c3.tif, "
                                                 "regions.tif and sample.json (polsar).", show_default=False)],
    task: Annotated[str, typer.Option("--task", help="pansharpen: PAN + MS of --sensor. hmif: a PRISMA L2D HE5 "
                                                     "at 30 m + Sentinel-2 band COGs at 10 m. stfuse: Landsat 8 C2 L2 "
                                                     "at two dates + MODIS MCD43A4 at three, the middle date's "
                                                     "truth. polsar: quad-pol SLC at 20 m + HH SLC at 10 m, the "
                                                     "expected C3.")] = "pansharpen",
    sensor: Annotated[str | None, typer.Option(
        "--sensor", "-s", help=f"Sensor profile (see `spatialx sensors`); pansharpen only [default: {DEFAULT_SENSOR}].",
        show_default=False)] = None,
    size: Annotated[int | None, typer.Option(
        "--size", min=16, help=f"Side in pixels: PAN pixels, a multiple of the ratio (pansharpen) [default: "
                               f"{DEFAULT_SIZE}]; Sentinel-2 10 m pixels, a multiple of 3 (hmif) [default: 384]; "
                               "Landsat 30 m pixels, 64 to 2048 (stfuse) [default: 300]; single-pol 10 m pixels, "
                               "64 to 2048 (polsar) [default: 256].",
        show_default=False)] = None,
    bands: Annotated[int | None, typer.Option(
        "--bands", help="hmif: PRISMA bands as read, the VNIR/SWIR overlap dropped (8-240) [default: 230].",
        show_default=False)] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same scene.")] = 0,
    overwrite: opt.Overwrite = False,
) -> None:
    """Generate a deterministic, georeferenced synthetic scene: PAN, MS and the high-resolution reference
    (pansharpen), a PRISMA-like hyperspectral cube, Sentinel-2 bands and the 10 m reference (hmif), or Landsat and
    MODIS products at three dates with the truth at the middle one (stfuse), or a quad-pol SLC scene at 20 m, its HH
    single-pol SLC at 10 m and the expected covariance C3 at 10 m (polsar)."""
    from spatialx.cli.progress import console
    from spatialx.errors import OutputError, SpatialxError

    name = task.strip().lower()
    if name not in TASKS:
        raise SpatialxError(f"--task {task}: sample writes {' or '.join(TASKS)} scenes",
                            hint="pansharpen for PAN + MS, hmif for HS + MS, stfuse for Landsat + MODIS dates, polsar "
                                 "for quad-pol + single-pol SAR")
    # Refuse the other task's options rather than ignore them: a forgotten --task would write the wrong scene.
    if name == "hmif" and sensor is not None:
        raise SpatialxError("--sensor is for pansharpen scenes",
                            hint="an hmif scene is always PRISMA L2D (HS) + Sentinel-2 L2A (MS): drop --sensor")
    if name == "stfuse" and sensor is not None:
        raise SpatialxError("--sensor is for pansharpen scenes",
                            hint="an stfuse scene is always Landsat 8 C2 L2 (fine) + MODIS MCD43A4 (coarse): drop "
                                 "--sensor")
    if name == "polsar" and sensor is not None:
        raise SpatialxError("--sensor is for pansharpen scenes",
                            hint="a polsar scene is always quad-pol SLC (20 m) + HH single-pol SLC (10 m): drop "
                                 "--sensor")
    if name != "hmif" and bands is not None:
        raise SpatialxError("--bands is for hmif scenes", hint="add --task hmif, or drop --bands")
    # The writers create out_dir themselves, after checking their arguments: a refused size leaves nothing behind.
    if not out_dir.exists() and not out_dir.parent.is_dir():
        raise OutputError("parent directory does not exist", path=out_dir.parent, hint="create it first")
    if name == "polsar":
        from spatialx.sample import POLSAR_SIZE, polsar_command, write_polsar_sample

        paths = write_polsar_sample(out_dir, size=POLSAR_SIZE if size is None else size, seed=seed,
                                    overwrite=overwrite)
        for role, path in paths.items():
            console.print(f"wrote {role}: {path}")
        console.print(f"fuse it with:\n  {polsar_command(paths, out_dir / 'polsar_bicubic.tif')}", soft_wrap=True,
                      highlight=False, markup=False)
        return
    if name == "stfuse":
        from spatialx.sample import STFUSE_SIZE, stfuse_command, write_stfuse_sample

        paths = write_stfuse_sample(out_dir, size=STFUSE_SIZE if size is None else size, seed=seed,
                                    overwrite=overwrite)
        for role, path in paths.items():
            console.print(f"wrote {role}: {path}")
        console.print(f"predict the middle date with:\n  {stfuse_command(paths, out_dir / 'stfuse_starfm.tif')}",
                      soft_wrap=True, highlight=False, markup=False)
        return
    if name == "hmif":
        from spatialx.sample import HMIF_BANDS, HMIF_SIZE, write_hmif_sample

        paths = write_hmif_sample(out_dir, size=HMIF_SIZE if size is None else size,
                                  bands=HMIF_BANDS if bands is None else bands, seed=seed, overwrite=overwrite)
    else:
        from spatialx.sample import write_sample

        paths = write_sample(out_dir, sensor=sensor or DEFAULT_SENSOR, size=DEFAULT_SIZE if size is None else size,
                             seed=seed, overwrite=overwrite)
    for role, path in paths.items():
        console.print(f"wrote {role}: {path}")
