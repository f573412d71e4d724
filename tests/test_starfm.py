"""Spatio-temporal fusion kernels (:mod:`spatialx.methods.classical.starfm`) against per-pixel references.

The references below follow the papers' per-pixel description literally (loops over pixels and window positions);
the compiled kernels must give the same numbers. The behaviour tests use small synthetic scenes: classes of
constant reflectance with a little texture, coarse images made as the pipeline sees them (footprint averages
interpolated back onto the fine grid).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage, stats

from spatialx.errors import InputMismatchError, MethodError
from spatialx.methods.classical.starfm import (
    DEFAULT_WINDOW_M,
    coarse_difference,
    estarfm,
    global_statistics,
    halo,
    starfm,
    window_pixels,
)

# ------------------------------------------------------------------------------------------------------------
# references: one pixel at a time, as the papers describe them


def starfm_reference(fine, coarse, target, sigma, window, classes=4.0, sigma_l=0.002, sigma_m=0.002,
                     log_form=False, log_scale=1e4, either=False):
    pairs, bands, rows, cols = fine.shape
    h = window // 2
    area = window / 2.0
    thresholds = np.broadcast_to(sigma, (pairs, bands)) * 2.0 / classes
    out = np.full((bands, rows, cols), np.nan)
    unc = np.full((bands, rows, cols), np.nan)
    for b in range(bands):
        for r in range(rows):
            for c in range(cols):
                p0 = target[b, r, c]
                if not np.isfinite(p0):
                    continue
                usable = [k for k in range(pairs) if np.isfinite(fine[k, b, r, c]) and np.isfinite(coarse[k, b, r, c])]
                if not usable:
                    continue
                s_centre = {k: abs(fine[k, b, r, c] - coarse[k, b, r, c]) for k in usable}
                t_centre = {k: abs(coarse[k, b, r, c] - p0) for k in usable}
                exact = [k for k in usable if s_centre[k] == 0 or t_centre[k] == 0]
                if exact:  # the paper: the pair's own value at the centre
                    values = np.array([fine[k, b, r, c] if t_centre[k] == 0 else p0 for k in exact])
                    out[b, r, c] = values.mean()
                    unc[b, r, c] = values.std()
                    continue
                s_limit = max(s_centre.values()) + math.hypot(sigma_l, sigma_m)
                t_limit = max(t_centre.values()) + math.sqrt(2) * sigma_m
                candidates = []
                for k in usable:
                    for y in range(max(0, r - h), min(rows, r + h + 1)):
                        for x in range(max(0, c - h), min(cols, c + h + 1)):
                            f, g, p = fine[k, b, y, x], coarse[k, b, y, x], target[b, y, x]
                            if not (np.isfinite(f) and np.isfinite(g) and np.isfinite(p)):
                                continue
                            if abs(f - fine[k, b, r, c]) > thresholds[k, b]:
                                continue
                            s, t = abs(f - g), abs(g - p)
                            passed = (s <= s_limit or t <= t_limit) if either else (s <= s_limit and t <= t_limit)
                            if not passed:
                                continue
                            d = 1.0 + math.hypot(y - r, x - c) / area
                            if log_form:
                                weight = math.log(s * log_scale + 1) * math.log(t * log_scale + 1) * d
                            else:
                                weight = s * t * d
                            candidates.append((weight, f + p - g))
                zero = [value for weight, value in candidates if weight == 0]
                if zero:
                    values, weights = np.array(zero), np.ones(len(zero))
                else:
                    values = np.array([value for _, value in candidates])
                    weights = 1.0 / np.array([weight for weight, _ in candidates])
                weights = weights / weights.sum()
                out[b, r, c] = np.sum(weights * values)
                unc[b, r, c] = math.sqrt(np.sum(weights * (values - out[b, r, c]) ** 2))
    return out, unc


def estarfm_reference(fine, coarse, target, sigma, window, classes=4.0, sigma_m=0.002, min_similar=6,
                      max_conversion=5.0, alpha=0.05):
    _, bands, rows, cols = fine.shape
    h = window // 2
    thresholds = np.broadcast_to(sigma, (2, bands)) * 2.0 / classes
    valid = (np.isfinite(fine).all(axis=(0, 1)) & np.isfinite(coarse).all(axis=(0, 1))
             & np.isfinite(target).all(axis=0))
    out = np.full((bands, rows, cols), np.nan)
    unc = np.full((bands, rows, cols), np.nan)
    regressed = 0
    for r in range(rows):
        for c in range(cols):
            if not valid[r, c]:
                continue
            window_pixels_ = [(y, x) for y in range(max(0, r - h), min(rows, r + h + 1))
                              for x in range(max(0, c - h), min(cols, c + h + 1)) if valid[y, x]]
            similar = [(y, x) for y, x in window_pixels_
                       if (y, x) == (r, c) or np.all(np.abs(fine[:, :, y, x] - fine[:, :, r, c]) <= thresholds)]
            weights = []
            for y, x in similar:
                f, g = fine[:, :, y, x].ravel(), coarse[:, :, y, x].ravel()
                corr = np.corrcoef(f, g)[0, 1] if f.std() > 0 and g.std() > 0 else 0.0
                d = 1.0 + math.hypot(y - r, x - c) / (window / 2.0)
                weights.append(1.0 / ((1.0 - corr) * d + 1e-7))
            weights = np.array(weights) / np.sum(weights)
            ys, xs = np.array([p[0] for p in similar]), np.array([p[1] for p in similar])
            wy, wx = np.array([p[0] for p in window_pixels_]), np.array([p[1] for p in window_pixels_])
            for b in range(bands):
                x_reg = np.concatenate([coarse[0, b, ys, xs], coarse[1, b, ys, xs]])
                y_reg = np.concatenate([fine[0, b, ys, xs], fine[1, b, ys, xs]])
                conversion = 1.0
                if len(similar) >= min_similar and np.std(x_reg, ddof=1) >= math.sqrt(2) * sigma_m and y_reg.std() > 0:
                    fit = stats.linregress(x_reg, y_reg)
                    if fit.pvalue <= alpha and fit.slope > 0:
                        conversion = min(fit.slope, max_conversion)
                        regressed += 1
                change = [abs(coarse[k, b, wy, wx].sum() - target[b, wy, wx].sum()) for k in range(2)]
                if change[0] == 0 and change[1] == 0:
                    t_weights = [0.5, 0.5]
                elif 0 in change:
                    t_weights = [float(change[0] == 0), float(change[1] == 0)]
                else:
                    inverse = [1.0 / change[0], 1.0 / change[1]]
                    t_weights = [inverse[0] / sum(inverse), inverse[1] / sum(inverse)]
                candidates, candidate_weights = [], []
                for k in range(2):
                    values = fine[k, b, r, c] + conversion * (target[b, ys, xs] - coarse[k, b, ys, xs])
                    candidates.append(values)
                    candidate_weights.append(t_weights[k] * weights)
                candidates, candidate_weights = np.concatenate(candidates), np.concatenate(candidate_weights)
                out[b, r, c] = np.sum(candidate_weights * candidates)
                unc[b, r, c] = math.sqrt(np.sum(candidate_weights * (candidates - out[b, r, c]) ** 2))
    return out, unc, regressed


# ------------------------------------------------------------------------------------------------------------
# synthetic scenes


def class_map(rows, cols, classes, seed, blob=6):
    """Patches of ``classes`` labels: a coarse random label field upsampled by ``blob``."""
    rng = np.random.default_rng(seed)
    coarse_labels = rng.integers(0, classes, size=(-(-rows // blob), -(-cols // blob)))
    labels = np.kron(coarse_labels, np.ones((blob, blob), dtype=int))[:rows, :cols]
    return labels


def to_coarse(image, ratio):
    """Footprint averages over ``ratio`` x ``ratio`` blocks, interpolated back onto the fine grid (bilinear)."""
    bands, rows, cols = image.shape
    blocks = image.reshape(bands, rows // ratio, ratio, cols // ratio, ratio).mean(axis=(2, 4))
    return np.stack([ndimage.zoom(band, ratio, order=1, mode="nearest", grid_mode=True) for band in blocks])


def reference_scene(seed=0, rows=12, cols=12, bands=2):
    """A small scene for the reference comparisons: three classes, texture, blurred coarse images, some NaN."""
    rng = np.random.default_rng(seed)
    labels = class_map(rows, cols, 3, seed, blob=4)
    means = rng.uniform(0.05, 0.4, size=(3, 3, bands))  # (date, class, band): dates m, n and target
    images = [np.moveaxis(means[t][labels], -1, 0) + 0.004 * rng.standard_normal((bands, rows, cols))
              for t in range(3)]
    blur = [ndimage.uniform_filter(image, size=(1, 3, 3), mode="nearest") + 0.003 * rng.standard_normal(image.shape)
            for image in images]
    fine = np.stack(images[:2])
    coarse = np.stack(blur[:2])
    target = blur[2]
    return fine, coarse, target, images[2]


def change_scene(seed=4, size=128, ratio=16, bands=3):
    """Four classes with their own linear trend (phenology) and a little texture, the class means a quarter of the
    range apart in every band (the similarity threshold separates them, as STARFM presumes); between the first
    pair and the target date a patch turns into class 3 (a land-cover change), which the second pair, after the
    target date, shows too. Returns the fine images at t_1, t_p (the truth), t_3, their coarse images, and the
    mask of the changed patch."""
    rng = np.random.default_rng(seed)
    labels = class_map(size, size, 4, seed, blob=size // 8)
    after = labels.copy()
    after[size // 4:size // 2, 3 * size // 8:5 * size // 8] = 3  # the land-cover change
    base = np.stack([0.05 + 0.1 * rng.permutation(4) for _ in range(bands)], axis=1)  # (class, band)
    trend = rng.uniform(-0.06, 0.08, size=(4, bands))  # each class's change per date step
    texture = 0.005 * rng.standard_normal((bands, size, size))

    def fine_at(step, classes_now):
        return np.moveaxis((base + step * trend)[classes_now], -1, 0) + texture

    fine = [fine_at(0, labels), fine_at(1, after), fine_at(2, after)]  # t_1, t_p (truth), t_3
    coarse = [to_coarse(image, ratio) for image in fine]
    return fine, coarse, after != labels


def rmse(a, b):
    return float(np.sqrt(np.nanmean((np.asarray(a, dtype=np.float64) - b) ** 2)))


# ------------------------------------------------------------------------------------------------------------
# agreement with the references


@pytest.mark.parametrize(("log_form", "either"), [(False, False), (True, False), (False, True)])
def test_starfm_matches_reference(log_form, either):
    fine, coarse, target, _ = reference_scene(seed=1)
    fine[0, 0, 2, 3] = np.nan  # an invalid neighbour and centre
    coarse[1, 1, 7, 7] = np.nan
    target[0, 9, 1] = np.nan
    coarse[0, :, 5, 5] = fine[0, :, 5, 5]  # S = 0 at a centre (and a zero-weight neighbour for others)
    target[1, 3, 9] = coarse[1, 1, 3, 9]  # T = 0 for the second pair at a centre
    sigma = global_statistics(list(fine)).sigma
    options = {"weighting": "log" if log_form else "product", "sample_filter": "either" if either else "both"}
    for pairs in (fine[:1], fine):
        k = len(pairs)
        got, got_unc = starfm(pairs, coarse[:k], target, sigma[:k], window=5, **options)
        want, want_unc = starfm_reference(pairs, coarse[:k], target, sigma[:k], 5, log_form=log_form, either=either)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(got_unc, want_unc, rtol=1e-4, atol=1e-6)
        assert np.isnan(got[0, 9, 1]) and np.isfinite(got).sum() == np.isfinite(want).sum()
        if k == 1 and not log_form:  # neighbours of (5, 5) where it is similar: its zero weight takes over
            assert np.isclose(got[0, 5, 4:8], target[0, 5, 5], rtol=0, atol=1e-7).sum() >= 3
    assert got[0, 5, 5] == np.float32(target[0, 5, 5])  # S = 0 at the centre of pair 1: C_p itself
    assert got[1, 3, 9] == np.float32(fine[1, 1, 3, 9])  # T = 0 at the centre for pair 2: F_2 itself


def test_estarfm_matches_reference():
    fine, coarse, target, _ = reference_scene(seed=2)
    fine[1, 0, 4, 4] = np.nan
    target[1, 10, 2] = np.nan
    sigma = global_statistics(list(fine)).sigma
    got, got_unc = estarfm(fine, coarse, target, sigma, window=5)
    want, want_unc, regressed = estarfm_reference(fine, coarse, target, sigma, 5)
    assert regressed > 20  # the conversion coefficient was regressed (not the V = 1 fallback) often
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_unc, want_unc, rtol=1e-4, atol=1e-6)
    assert np.isnan(got[:, 4, 4]).all() and np.isnan(got[:, 10, 2]).all()
    assert np.isfinite(got).sum() == got.size - 2 * got.shape[0]


def test_estarfm_single_band_matches_reference():
    fine, coarse, target, _ = reference_scene(seed=4, bands=1)
    sigma = global_statistics(list(fine)).sigma
    got, got_unc = estarfm(fine, coarse, target, sigma, window=5, classes=2)
    want, want_unc, _ = estarfm_reference(fine, coarse, target, sigma, 5, classes=2)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_unc, want_unc, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------------------------------------
# tiles


def test_tiles_equal_whole_image():
    fine, coarse, _ = change_scene(size=48, ratio=8, bands=2)
    pairs_f, pairs_c, target = np.stack([fine[0], fine[2]]), np.stack([coarse[0], coarse[2]]), coarse[1].copy()
    pairs_f[0, :, 10, 10] = np.nan
    target[1, 30, 5] = np.nan
    sigma = global_statistics(list(pairs_f)).sigma
    window = 9
    pad = halo(window)
    runs = {
        "starfm": lambda f, c, p: starfm(f, c, p, sigma, window=window),
        "starfm-log": lambda f, c, p: starfm(f, c, p, sigma, window=window, weighting="log"),
        "estarfm": lambda f, c, p: estarfm(f, c, p, sigma, window=window),
        "coarse-difference": lambda f, c, p: coarse_difference(f, c, p),
    }
    tiles = [(0, 20, 0, 48), (20, 48, 0, 25), (20, 48, 25, 48), (13, 31, 17, 40)]  # rows and cols, interiors
    for name, run in runs.items():
        whole, whole_unc = run(pairs_f, pairs_c, target)
        for r0, r1, c0, c1 in tiles:
            a0, a1, b0, b1 = max(r0 - pad, 0), min(r1 + pad, 48), max(c0 - pad, 0), min(c1 + pad, 48)
            part, part_unc = run(pairs_f[..., a0:a1, b0:b1], pairs_c[..., a0:a1, b0:b1], target[:, a0:a1, b0:b1])
            inner = (slice(None), slice(r0 - a0, r1 - a0), slice(c0 - b0, c1 - b0))
            np.testing.assert_array_equal(part[inner], whole[:, r0:r1, c0:c1], err_msg=name)
            np.testing.assert_array_equal(part_unc[inner], whole_unc[:, r0:r1, c0:c1], err_msg=name)


# ------------------------------------------------------------------------------------------------------------
# behaviour


def test_no_change_gives_the_fine_image():
    fine, coarse, _, _ = reference_scene(seed=5, rows=20, cols=20)
    sigma = global_statistics(list(fine)).sigma
    prediction, uncertainty = starfm(fine[:1], coarse[:1], coarse[0], sigma[:1], window=7)
    np.testing.assert_array_equal(prediction, fine[0].astype(np.float32))
    assert np.all(uncertainty == 0)
    # ESTARFM: the target coarse equals the first pair's, so that pair takes the whole temporal weight
    prediction, uncertainty = estarfm(fine, coarse, coarse[0], sigma, window=7)
    np.testing.assert_array_equal(prediction, fine[0].astype(np.float32))
    assert np.all(uncertainty == 0)
    np.testing.assert_array_equal(coarse_difference(fine[0], coarse[0], coarse[0])[0], fine[0].astype(np.float32))


def test_uniform_coarse_shift_shifts_the_prediction():
    labels = class_map(30, 30, 4, 6, blob=5)
    # classes of constant reflectance, further apart in every band than the similarity threshold (sigma / 2)
    means = np.array([[0.05, 0.25], [0.15, 0.05], [0.25, 0.35], [0.35, 0.15]])
    fine = np.moveaxis(means[labels], -1, 0)
    coarse = to_coarse(np.pad(fine, ((0, 0), (0, 2), (0, 2)), mode="edge"), 4)[:, :30, :30]
    sigma = global_statistics(fine).sigma
    delta = 0.03
    prediction, _ = starfm(fine, coarse, coarse + delta, sigma, window=7)
    np.testing.assert_allclose(prediction, fine + delta, atol=1e-6)
    prediction, _ = estarfm([fine, fine], [coarse, coarse], coarse + delta, np.concatenate([sigma, sigma]), window=7)
    np.testing.assert_allclose(prediction, fine + delta, atol=1e-6)
    # With the product weighting a uniform change of the temporal difference scales every weight alike: on any
    # scene, two uniform shifts give predictions that differ by the shifts' difference.
    scene, scene_coarse, _, _ = reference_scene(seed=7, rows=20, cols=20)
    sig = global_statistics(scene[0]).sigma
    low, _ = starfm(scene[0], scene_coarse[0], scene_coarse[0] + 0.01, sig, window=5)
    high, _ = starfm(scene[0], scene_coarse[0], scene_coarse[0] + 0.04, sig, window=5)
    np.testing.assert_allclose(high - low, 0.03, atol=1e-6)


def test_land_cover_change_scene(capsys):
    fine, coarse, changed = change_scene()
    truth = fine[1]
    window = 25
    one = global_statistics(fine[0]).sigma
    two = global_statistics([fine[0], fine[2]]).sigma
    pairs_f, pairs_c = [fine[0], fine[2]], [coarse[0], coarse[2]]
    results = {
        "no change (F_1)": fine[0],
        "coarse difference": coarse_difference(fine[0], coarse[0], coarse[1])[0],
        "starfm": starfm(fine[0], coarse[0], coarse[1], one, window=window)[0],
        "starfm, log weights": starfm(fine[0], coarse[0], coarse[1], one, window=window, weighting="log")[0],
        "starfm, either filter": starfm(fine[0], coarse[0], coarse[1], one, window=window, sample_filter="either")[0],
        "coarse difference, 2 pairs": coarse_difference(pairs_f, pairs_c, coarse[1])[0],
        "starfm, 2 pairs": starfm(pairs_f, pairs_c, coarse[1], two, window=window)[0],
        "estarfm (2 pairs)": estarfm(pairs_f, pairs_c, coarse[1], two, window=window)[0],
    }
    errors = {name: (rmse(image, truth), rmse(image[:, changed], truth[:, changed]),
                     rmse(image[:, ~changed], truth[:, ~changed])) for name, image in results.items()}
    with capsys.disabled():
        print("\nRMSE against the truth at t_p (reflectance): whole, changed patch, elsewhere")
        for name, (whole, inside, outside) in errors.items():
            print(f"  {name:28s} {whole:.4f}  {inside:.4f}  {outside:.4f}")
    assert errors["starfm"][0] < 0.5 * errors["no change (F_1)"][0]
    assert errors["starfm"][1] < errors["no change (F_1)"][1]  # the change is partly seen through the coarse
    assert errors["starfm"][0] < 1.15 * errors["coarse difference"][0]
    assert errors["starfm"][2] < errors["coarse difference"][2]  # where the land cover holds, STARFM is better
    assert errors["starfm, 2 pairs"][0] < errors["starfm"][0]
    assert errors["estarfm (2 pairs)"][0] < errors["coarse difference, 2 pairs"][0]


def test_multi_pair_uses_the_pair_at_the_target_date():
    fine, coarse, _ = change_scene(size=48, bands=2)
    sigma = global_statistics([fine[0], fine[1]]).sigma
    # The second pair is the target date itself: T = 0 at every centre, so the prediction is its fine image.
    prediction, uncertainty = starfm([fine[0], fine[1]], [coarse[0], coarse[1]], coarse[1], sigma, window=7)
    np.testing.assert_array_equal(prediction, fine[1].astype(np.float32))
    assert np.all(uncertainty == 0)
    # A stack and a list of pairs are the same input.
    stacked = starfm(np.stack([fine[0], fine[2]]), np.stack([coarse[0], coarse[2]]), coarse[1], sigma, window=7)
    listed = starfm([fine[0], fine[2]], [coarse[0], coarse[2]], coarse[1], sigma, window=7)
    np.testing.assert_array_equal(stacked[0], listed[0])


def test_nan_centres_give_nan_and_nan_neighbours_do_not_spread():
    fine, coarse, _ = change_scene(size=32, bands=2)
    f1, c1, cp, f3, c3 = fine[0].copy(), coarse[0].copy(), coarse[1].copy(), fine[2].copy(), coarse[2].copy()
    f1[0, 10, 10] = np.nan  # one band of one pair's fine image
    cp[:, 20, 5] = np.nan  # the target coarse image
    sigma = global_statistics([f1, f3]).sigma
    prediction, uncertainty = starfm(f1, c1, cp, sigma[:1], window=7)
    assert np.isnan(prediction[0, 10, 10]) and np.isfinite(prediction[1, 10, 10])
    assert np.isnan(prediction[:, 20, 5]).all()
    assert np.isfinite(prediction).sum() == prediction.size - 3
    assert np.array_equal(np.isnan(uncertainty), np.isnan(prediction))
    # With two pairs the pixel that one pair lacks is predicted from the other.
    prediction, _ = starfm([f1, f3], [c1, c3], cp, sigma, window=7)
    assert np.isfinite(prediction[0, 10, 10]) and np.isfinite(prediction).sum() == prediction.size - 2
    # ESTARFM needs every input at the pixel, in every band.
    prediction, uncertainty = estarfm([f1, f3], [c1, c3], cp, sigma, window=7)
    assert np.isnan(prediction[:, 10, 10]).all() and np.isnan(prediction[:, 20, 5]).all()
    assert np.isfinite(prediction).sum() == prediction.size - 4
    prediction, _ = coarse_difference([f1, f3], [c1, c3], cp)
    assert np.isfinite(prediction[0, 10, 10]) and np.isnan(prediction[:, 20, 5]).all()


def test_land_surface_temperature_band():
    """One band in kelvin: the thresholds come from the band's sigma, so the same code works in any unit."""
    fine, coarse, _ = change_scene(seed=8, bands=1)
    scale, offset = 100.0, 280.0  # reflectance-like values mapped to ~285-320 K
    kelvin = [image * scale + offset for image in fine]
    kelvin_coarse = [image * scale + offset for image in coarse]
    sigma = global_statistics([kelvin[0], kelvin[2]]).sigma
    assert np.all((kelvin[0] > 280) & (kelvin[0] < 330))
    options = {"window": 15, "fine_uncertainty": 0.2, "coarse_uncertainty": 0.2}
    lst, lst_unc = starfm(kelvin[0], kelvin_coarse[0], kelvin_coarse[1], sigma[:1], **options)
    assert lst.dtype == np.float32 and np.isfinite(lst).all()
    assert rmse(lst, kelvin[1]) < 0.6 * rmse(kelvin[0], kelvin[1])  # about 2.8 K against 5.7 K unchanged
    est, _ = estarfm([kelvin[0], kelvin[2]], [kelvin_coarse[0], kelvin_coarse[2]], kelvin_coarse[1], sigma,
                     window=15, coarse_uncertainty=0.2)
    difference, _ = coarse_difference([kelvin[0], kelvin[2]], [kelvin_coarse[0], kelvin_coarse[2]], kelvin_coarse[1])
    assert np.isfinite(est).all() and rmse(est, kelvin[1]) < rmse(difference, kelvin[1])
    # Units do not matter: the kelvin result is the reflectance result mapped the same way.
    refl_sigma = global_statistics([fine[0], fine[2]]).sigma
    refl, refl_unc = starfm(fine[0], coarse[0], coarse[1], refl_sigma[:1], window=15, fine_uncertainty=0.002,
                            coarse_uncertainty=0.002)
    np.testing.assert_allclose(lst, refl.astype(np.float64) * scale + offset, atol=2e-4)
    np.testing.assert_allclose(lst_unc, refl_unc.astype(np.float64) * scale, atol=2e-4)
    refl_est, _ = estarfm([fine[0], fine[2]], [coarse[0], coarse[2]], coarse[1], refl_sigma, window=15,
                          coarse_uncertainty=0.002)
    np.testing.assert_allclose(est, refl_est.astype(np.float64) * scale + offset, atol=2e-4)


# ------------------------------------------------------------------------------------------------------------
# helpers and errors


def test_coarse_difference_weights_pairs_by_inverse_coarse_change():
    f1, f2 = np.full((1, 2, 2), 0.2), np.full((1, 2, 2), 0.4)
    c1, c2, cp = np.full((1, 2, 2), 0.25), np.full((1, 2, 2), 0.45), np.full((1, 2, 2), 0.35)
    c2[0, 1, 1] = 0.35  # no coarse change since pair 2 at this pixel: it takes the whole weight
    prediction, spread = coarse_difference([f1, f2], [c1, c2], cp)
    # pair 1 changed by 0.10 (prediction 0.30), pair 2 by 0.10 (prediction 0.30): equal weights
    np.testing.assert_allclose(prediction[0, 0, 0], 0.30, atol=1e-7)
    np.testing.assert_allclose(prediction[0, 1, 1], 0.40, atol=1e-7)
    assert spread[0, 1, 1] == 0
    c1[0, 0, 1] = 0.05  # pair 1 changed by 0.30 (prediction 0.50), pair 2 by 0.10 (0.30): weights 1/3 and 1
    prediction, spread = coarse_difference([f1, f2], [c1, c2], cp)
    np.testing.assert_allclose(prediction[0, 0, 1], (0.50 / 0.30 + 0.30 / 0.10) / (1 / 0.30 + 1 / 0.10), atol=1e-6)
    assert spread[0, 0, 1] > 0


def test_global_statistics_are_nan_aware():
    rng = np.random.default_rng(9)
    first, second = rng.random((3, 10, 12)), rng.random((3, 10, 12))
    first[1, 2:5, 3] = np.nan
    coarse_second = second.copy()
    coarse_second[0, 0, :] = np.nan
    statistics = global_statistics([first, second], [first, coarse_second])
    assert statistics.sigma.shape == (2, 3)
    np.testing.assert_allclose(statistics.sigma[0], np.nanstd(first.reshape(3, -1), axis=1))
    np.testing.assert_allclose(statistics.sigma[1, 0], np.std(second[0, 1:]))
    assert statistics.count[0, 1] == 120 - 3 and statistics.count[1, 0] == 108
    np.testing.assert_allclose(global_statistics(first[:, ::3, ::2]).sigma[0, 0], first[0, ::3, ::2].std())
    assert global_statistics(rng.random((2, 50))).sigma.shape == (1, 2)  # strided (bands, n) samples


def test_window_and_halo():
    assert DEFAULT_WINDOW_M == 1500
    assert window_pixels(30.0) == 51 and window_pixels(30.0, 900) == 31 and window_pixels(100.0) == 15
    assert halo(51) == 25 and halo(1) == 0


def test_errors_are_one_line():
    fine, coarse, target, _ = reference_scene()
    sigma = global_statistics(list(fine)).sigma
    with pytest.raises(MethodError, match="odd"):
        starfm(fine[0], coarse[0], target, sigma[0], window=4)
    with pytest.raises(MethodError, match="odd"):
        halo(0)
    with pytest.raises(MethodError, match="weighting"):
        starfm(fine[0], coarse[0], target, sigma[0], window=5, weighting="cosine")
    with pytest.raises(InputMismatchError, match="exactly two"):
        estarfm(fine[:1], coarse[:1], target, sigma[:1], window=5)
    with pytest.raises(InputMismatchError, match="coarse target"):
        starfm(fine[0], coarse[0], target[:, :5], sigma[0], window=5)
    with pytest.raises(InputMismatchError, match="sigma"):
        starfm(fine[0], coarse[0], target, np.ones(5), window=5)
    with pytest.raises(InputMismatchError, match="coarse image"):
        starfm(fine, coarse[:1], target, sigma, window=5)
