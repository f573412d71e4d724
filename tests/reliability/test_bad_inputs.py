"""Bad input over every task, through the command line: each case exits 2 with one ``spatialx: error`` line, no
traceback, nothing written, and every input byte for byte unchanged (issue #16)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from scenes import write_hmif_pair, write_pair, write_tif


def _checksums(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Every task's inputs in one read-only-by-convention folder."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "pansharpen").mkdir()
    write_pair(root / "pansharpen", pan_size=(64, 64))
    from spatialx.sample import write_sample

    write_sample(root / "tagged", sensor="wv3", size=64)  # products whose bands carry wavelength tags
    (root / "hmif").mkdir()
    write_hmif_pair(root / "hmif", 48)
    st = root / "stfuse"
    st.mkdir()
    field = np.linspace(280, 300, 60 * 60, dtype=np.float32).reshape(1, 60, 60)
    for date in ("20210501", "20210602"):
        write_tif(st / f"fine_{date}.tif", field, Affine(30, 0, 500000, 0, -30, 4600020), "EPSG:32633", nodata=None)
        write_tif(st / f"coarse_{date}.tif", field[:, ::15, ::15].copy(), Affine(450, 0, 500000, 0, -450, 4600020),
                  "EPSG:32633", nodata=None)
    quad = root / "polsar" / "quad"
    quad.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for pol in ("HH", "HV", "VH", "VV"):
        slc = rng.standard_normal((2, 24, 24)).astype(np.float32)
        write_tif(quad / f"slc_{pol}.tif", slc, Affine(20, 0, 400000, 0, -20, 5000000), "EPSG:32633", nodata=None)
    write_tif(root / "polsar" / "single.tif", rng.gamma(2.0, 1.0, (1, 48, 48)).astype(np.float32),
              Affine(10, 0, 400000, 0, -10, 5000000), "EPSG:32633", nodata=None)
    three = root / "polsar" / "three"
    three.mkdir()
    for pol in ("HH", "HV", "VV"):
        shutil.copy(quad / f"slc_{pol}.tif", three / f"slc_{pol}.tif")
    (root / "notes.txt").write_text("not a raster\n")
    pan = root / "pansharpen" / "pan.tif"
    (root / "truncated.tif").write_bytes(pan.read_bytes()[: len(pan.read_bytes()) // 3])
    eight = rng.uniform(0.1, 1.0, (8, 48, 48)).astype(np.float32)
    write_tif(root / "polsar" / "c3_eight.tif", eight, Affine(10, 0, 400000, 0, -10, 5000000), "EPSG:32633",
              nodata=None)
    bad = rng.uniform(0.1, 1.0, (9, 24, 24)).astype(np.float32)
    bad[0] = -1.0  # C11 < 0: not a covariance matrix
    write_tif(root / "polsar" / "c3_negative.tif", bad, Affine(20, 0, 400000, 0, -20, 5000000), "EPSG:32633",
              nodata=None)
    return root


P, M = "{in}/pansharpen/pan.tif", "{in}/pansharpen/ms.tif"
HS, MS = "{in}/hmif/PRS_L2D_test.he5", "{in}/hmif/S2A_TEST_L2A"
F1, F2 = "2021-05-01={in}/stfuse/fine_20210501.tif", "2021-06-02={in}/stfuse/fine_20210602.tif"
C1, C2 = "2021-05-01={in}/stfuse/coarse_20210501.tif", "2021-06-02={in}/stfuse/coarse_20210602.tif"
LST = ("--fine-sensor", "lst", "--coarse-sensor", "lst")
Q, S = "{in}/polsar/quad", "{in}/polsar/single.tif"

CASES = {
    # pansharpen
    "missing PAN": (["pansharpen", "{in}/nope.tif", M, "{out}/o.tif", "-s", "qb"], "does not exist"),
    "PAN is a folder": (["pansharpen", "{in}/pansharpen", M, "{out}/o.tif", "-s", "qb"], "directory"),
    "PAN not a raster": (["pansharpen", "{in}/notes.txt", M, "{out}/o.tif", "-s", "qb"], "not a raster"),
    "PAN truncated": (["pansharpen", "{in}/truncated.tif", M, "{out}/o.tif", "-s", "qb"], ""),
    "MS band count": (["pansharpen", P, M, "{out}/o.tif", "-s", "wv3"], "band"),
    "unknown sensor": (["pansharpen", P, M, "{out}/o.tif", "-s", "nosuch"], "nosuch"),
    "unknown method": (["pansharpen", P, M, "{out}/o.tif", "-s", "qb", "-m", "nosuch"], "nosuch"),
    "output folder missing": (["pansharpen", P, M, "{out}/no/o.tif", "-s", "qb"], ""),
    "output is an input": (["pansharpen", P, M, M, "-s", "qb", "--overwrite"], ""),
    "dtype float13": (["pansharpen", P, M, "{out}/o.tif", "-s", "qb", "--dtype", "float13"], "float13"),
    "dtype complex64": (["pansharpen", P, M, "{out}/o.tif", "-s", "qb", "--dtype", "complex64"], "complex64"),
    "ratio 1e6": (["pansharpen", P, M, "{out}/o.tif", "-s", "qb", "--ratio", "1e6"], "ratio"),
    "png output": (["pansharpen", P, M, "{out}/o.png", "-s", "qb"], "png"),
    "repeated bands": (["pansharpen", P, M, "{out}/o.tif", "-s", "qb", "--bands", "2,2,3,4"], ""),
    "PAN coarser than MS": (["pansharpen", M, P, "{out}/o.tif", "-s", "qb"], ""),
    "MS as PAN": (["pansharpen", M, M, "{out}/o.tif", "-s", "qb"], ""),
    "tagged MS as PAN": (["pansharpen", "{in}/tagged/ms.tif", "{in}/tagged/ms.tif", "{out}/o.tif", "-s", "wv3"],
                         "bands"),
    "tagged MS of another sensor": (["pansharpen", "{in}/tagged/pan.tif", "{in}/tagged/ms.tif", "{out}/o.tif",
                                     "-s", "qb"], "8 bands"),
    "weights missing": (["pansharpen", P, M, "{out}/o.tif", "-s", "qb", "-m", "pnn", "--weights", "{in}/w.safetensors"],
                        "does not exist"),
    "network untrained": (["pansharpen", P, M, "{out}/o.tif", "-s", "qb", "-m", "pnn", "--config", "qb"], "weights"),
    "network scratch without adaptation": (["pansharpen", P, M, "{out}/o.tif", "-s", "qb", "-m", "pnn", "--scratch"],
                                           "--adapt-steps"),
    "network without bundled weights": (["hmif", HS, MS, "{out}/o.tif", "-m", "lemamba"], "no bundled weights"),
    "unknown device": (["pansharpen", P, M, "{out}/o.tif", "-s", "qb", "--device", "tpu"], "tpu"),
    # hmif
    "HS missing": (["hmif", "{in}/nope.he5", MS, "{out}/o.tif"], "does not exist"),
    "one-band HS": (["hmif", "{in}/polsar/single.tif", MS, "{out}/o.tif"], ""),
    "pansharpen-only method": (["hmif", HS, MS, "{out}/o.tif", "-m", "brovey"], "brovey"),
    "MS band twice": (["hmif", HS, MS, "{out}/o.tif", "--ms-bands", "B02,B02"], "B02"),
    "MS band absent": (["hmif", HS, MS, "{out}/o.tif", "--ms-bands", "B99"], "B99"),
    "HS as output": (["hmif", HS, MS, HS, "--overwrite"], ""),
    # stfuse
    "prediction at a fine date": (["stfuse", "{out}/o.tif", "--fine", F1, "--coarse", C1, "--coarse", C2,
                                   "--predict", "2021-05-01", *LST], "date of an input fine image"),
    "no coarse at the prediction": (["stfuse", "{out}/o.tif", "--fine", F1, "--coarse", C1, "--predict",
                                     "2021-06-02", *LST], "no coarse image at the prediction date"),
    "bad date": (["stfuse", "{out}/o.tif", "--fine", F1, "--coarse", C1, "--coarse", C2, "--predict", "June",
                  *LST], "not a date"),
    "unpaired fine": (["stfuse", "{out}/o.tif", "--fine", F1, "--fine", F2, "--coarse", C2, "--predict",
                       "2021-07-04", *LST], "no coarse image"),
    "plain raster without a date": (["stfuse", "{out}/o.tif", "--fine", "{in}/stfuse/fine_20210501.tif", "--coarse",
                                     C1, "--coarse", C2, "--predict", "2021-06-02", *LST], "acquisition date"),
    "plain raster without a sensor": (["stfuse", "{out}/o.tif", "--fine", F1, "--coarse", C1, "--coarse", C2,
                                       "--predict", "2021-06-02"], "--fine-sensor"),
    "estarfm with one pair": (["stfuse", "{out}/o.tif", "--fine", F1, "--coarse", C1, "--coarse", C2, "--predict",
                               "2021-06-02", "-m", "estarfm", *LST], "two"),
    "even window": (["stfuse", "{out}/o.tif", "--fine", F1, "--coarse", C1, "--coarse", C2, "--predict",
                     "2021-06-02", "-m", "starfm", "--window", "4", *LST], "window"),
    "NDVI of LST": (["stfuse", "{out}/o.tif", "--fine", F1, "--coarse", C1, "--coarse", C2, "--predict",
                     "2021-06-02", "--ndvi", "{out}/n.tif", *LST], "near-infrared"),
    # polsar
    "three polarisations": (["polsar", "{in}/polsar/three", S, "{out}/o.tif"], "VH"),
    "C3 with eight bands": (["polsar", "{in}/polsar/c3_eight.tif", S, "{out}/o.tif"], ""),
    "C3 not a covariance": (["polsar", "{in}/polsar/c3_negative.tif", S, "{out}/o.tif"], "positive semidefinite"),
    "unknown speckle filter": (["polsar", Q, S, "{out}/o.tif", "--speckle", "frost"], "frost"),
    "simulate with a single-pol": (["polsar", Q, S, "{out}/o.tif", "--simulate-from", "2"], "simulate"),
    # evaluate, sample, ndvi
    "compare grids differ": (["evaluate", "compare", P, M, "-s", "qb"], ""),
    "compare unknown task": (["evaluate", "compare", P, P, "--task", "bogus"], "bogus"),
    "reduced polsar with an MS": (["evaluate", "reduced", Q, M, "--task", "polsar"], "quad-pol scene alone"),
    "sample size off the ratio": (["sample", "{out}/s", "--size", "513"], "--size"),
    "ndvi without red/NIR": (["ndvi", "{in}/polsar/single.tif", "{out}/n.tif", "-s", "lst"], ""),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input(case, inputs, tmp_path, request):
    cli = request.getfixturevalue("spatialx")
    args, expected = CASES[case]
    out = tmp_path / "out"
    out.mkdir()
    before = _checksums(inputs)
    done = cli(*(a.format(**{"in": inputs, "out": out}) for a in args), cwd=tmp_path)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("spatialx: error")]
    assert done.returncode == 2, (case, done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr and len(errors) == 1, (case, done.stderr[-2000:])
    assert expected.lower() in errors[0].lower(), (case, errors[0])
    assert list(out.iterdir()) == [], (case, list(out.iterdir()))
    assert _checksums(inputs) == before, case
