"""Train the default weights bundled with spatialx (``spatialx/models/weights/``), deterministically, offline.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/train_default_weights.py            # the shipped eight, ~3.5 h
    .venv/bin/python scripts/train_default_weights.py --only pnn-qb --out /tmp/w   # one target elsewhere

Each target is a network's main configuration: ``pnn``, ``lemamba`` and ``rwkvfusion`` for 8-band (``wv3``) and
4-band (``qb``) sensors (RWKVFusion: 400 steps of 4 x 64 px, 19-20 min each), and ``spaxfus-qb`` (its authors'
pansharpening configuration is the 4-band GF-2 one) and ``spaxfus-wv3``, each in two stages: 400 steps of 2 x 32 px
(33-48 min, as the targets ``spaxfus-qb-32px`` and ``spaxfus-wv3-32px``), then 300 steps of 2 x 64 px under a
OneCycle schedule (32-35 min on two threads; ``--init`` a 32 px file skips the first stage) (:data:`SHIPPED`).
Every target trains with one recipe (AdamW lr 1e-3, L1 + 0.1 (1 - SSIM), EMA 0.995, clip 0.03), SpaXFus included
(from scratch, its own recipe's lr 1e-4 learnt far slower in scene adaptation: README); RWKVFusion at its own recipe's
lr 3e-4 (:class:`Target`). Weights that do not beat ``exp`` in Q2n on every validation scene are not written
(``--keep-worse`` overrides). Training data, all available offline and all through Wald's reduced-resolution
protocol (:class:`WaldPatchDataset`: the MS degraded with the sensor's MTF by the ratio, the PAN reduced to the MS
grid, the original MS as the target):

* generated scenes (:func:`spatialx.sample.generate_scene`, what ``spatialx sample`` writes, rounded to whole DN)
  of every pansharpening sensor with that band count: wv2 and wv3 for the 8-band weights; qb, geoeye1, ikonos and
  gf2 for the 4-band ones; seeds :data:`TRAIN_SEEDS`, :data:`SCENE_SIZE` px each (seed 0, the demo's and the
  README's sample, and the benchmarks' seeds are not among them);
* for the 4-band weights, the real QuickBird Toulouse pair of ``../shared/data/real/`` (its XS is delivered on the
  PAN grid, so the PAN is used as it is), **northern half only** (PAN rows < 250 of 500): the southern half stays
  unseen, for ``benchmarks/default_weights_vs_scratch.py``.

One stream draws each example from one source (:func:`spatialx.training.data.mix_streams`, weights
:data:`MIX`), and the library's training loop trains (:func:`spatialx.training.loop.train`: AdamW, L1 + 0.1 (1 -
SSIM), clipping, EMA; the EMA weights are saved). Validation: a held-out generated scene per sensor (seed
:data:`VAL_SEED`), on a fixed grid of patches, for the network and for ``exp`` (the upsampled MS) side by side.
Weights and cards are written with :func:`spatialx.models.weights.save_weights`; the card states all of the above.
"""

from __future__ import annotations

import argparse
import functools
import os
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import Any, NamedTuple

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real"
REAL_FILES = ("qb_toulouse_pan.tif", "qb_toulouse_xs.tif")
DEFAULT_OUT = REPO / "spatialx" / "models" / "weights"

SCENE_SIZE = 512  # PAN pixels a side (MS 128 at ratio 4)
TRAIN_SEEDS = tuple(range(1, 17))
VAL_SEED = 900
VAL_PATCHES = 16
SENSORS = {"wv3": ("wv2", "wv3"), "qb": ("qb", "geoeye1", "ikonos", "gf2")}
#: Share of the examples drawn from the real QuickBird half in the 4-band mixture (the rest split evenly).
REAL_SHARE = 1 / 3
SEED = 0
LR = 1e-3
LOSS = "l1+ssim"

class Target(NamedTuple):
    architecture: str
    config: str
    steps: int
    patch: int
    batch: int
    lr: float = LR
    schedule: str = "none"
    #: A target trained first, whose weights this one continues from (``--init`` gives them instead).
    init: str | None = None


#: The shipped targets; step times on one CPU thread.
TARGETS: dict[str, Target] = {
    "pnn-wv3": Target("pnn", "wv3", 500, 64, 8),
    "pnn-qb": Target("pnn", "qb", 500, 64, 8),
    "lemamba-wv3": Target("lemamba", "wv3", 180, 32, 4),
    "lemamba-qb": Target("lemamba", "qb", 180, 32, 4),
    # SpaXFus is ~4x slower a step than LE-Mamba (4.3 s a step of 2 x 32 px on one thread): 70 steps left it far below
    # exp on validation (Q2n 0.22-0.28 against 0.73); 400 steps (33 min) pass the gate (Q2n 0.81-0.82 against 0.73).
    # At 32 px its spectral fit stays poor (WV3 validation SAM 5.33, exp's 5.35; D_lambda twice the others' at full
    # resolution, README): it goes on in patches of 64 px, one quarter of a reduced training scene, under a OneCycle
    # schedule (one AdamW step at 1e-3 from fresh moments took its validation SAM from 5.3 to 19).
    "spaxfus-qb-32px": Target("spaxfus", "qb", 400, 32, 2),
    "spaxfus-qb": Target("spaxfus", "qb", 300, 64, 2, schedule="onecycle", init="spaxfus-qb-32px"),
    "spaxfus-wv3-32px": Target("spaxfus", "wv3", 400, 32, 2),
    "spaxfus-wv3": Target("spaxfus", "wv3", 300, 64, 2, schedule="onecycle", init="spaxfus-wv3-32px"),
    # RWKVFusion at its own recipe's lr: at 1e-3 a fresh network's first AdamW steps spike (spatialx/models/zoo.py).
    "rwkvfusion-wv3": Target("rwkvfusion", "wv3", 400, 64, 4, lr=3e-4),
    "rwkvfusion-qb": Target("rwkvfusion", "qb", 400, 64, 4, lr=3e-4),
}
#: What the package ships (the default of --only); the two SpaXFus targets take most of the time.
SHIPPED = ("pnn-wv3", "pnn-qb", "lemamba-wv3", "lemamba-qb", "spaxfus-qb", "spaxfus-wv3", "rwkvfusion-wv3",
           "rwkvfusion-qb")


def _dn(array, max_value: float):
    """Generated values as a file holds them: whole DN in [1, max] (0 is nodata)."""
    import numpy as np

    return np.clip(np.rint(array), 1, max_value).astype(np.float32)


@functools.cache
def generated_scenes(sensor: str, seeds: tuple[int, ...]) -> list:
    from spatialx.sample import generate_scene
    from spatialx.sensors import get_sensor
    from spatialx.training.data import ArrayScene

    top = get_sensor(sensor).max_value
    scenes = []
    for seed in seeds:
        scene = generate_scene(sensor, SCENE_SIZE, seed=seed)
        scenes.append(ArrayScene(_dn(scene.pan, top), _dn(scene.ms, top), pan_to_ms=scene.ratio,
                                 name=f"{sensor} seed {seed}"))
    return scenes


def real_north_half():
    """The QuickBird pair's northern half (PAN rows < H / 2) as an array scene, the XS on the PAN grid."""
    import numpy as np
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    from spatialx.training.data import ArrayScene

    arrays = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        for name in REAL_FILES:
            with rasterio.open(REAL / name) as src:
                arrays.append(src.read().astype(np.float32))
    pan, xs = arrays
    half = pan.shape[1] // 2
    return ArrayScene(pan[:, :half], xs[:, :half], pan_to_ms=1, name="QuickBird Toulouse, northern half"), {
        "kind": "real", "sensor": "qb", "files": list(REAL_FILES),
        "source": "../shared/data/real (Orfeo ToolBox example data, QuickBird, Toulouse)",
        "rows": f"PAN/XS rows 0-{half - 1} of {pan.shape[1]} (northern half), all {pan.shape[2]} columns",
        "note": "the XS is delivered on the PAN grid: the PAN is used as it is, the XS degraded by the ratio"}


def build_data(group: str, patch: int):
    """``(train stream, {sensor: validation data}, description)`` for the 8-band (``wv3``) or 4-band (``qb``)
    weights."""
    from spatialx.training.data import GridPatchSampler, PatchStream, RandomPatchSampler, WaldPatchDataset, mix_streams

    streams, names, shares, sources, validation = [], [], [], [], {}
    generated_share = (1.0 - REAL_SHARE) if group == "qb" else 1.0
    for sensor in SENSORS[group]:
        dataset = WaldPatchDataset(generated_scenes(sensor, TRAIN_SEEDS), sensor)
        streams.append(PatchStream(dataset, RandomPatchSampler(dataset, patch, seed=SEED)))
        names.append(f"{sensor} generated")
        shares.append(generated_share / len(SENSORS[group]))
        sources.append({"kind": "generated", "sensor": sensor, "generator": "spatialx.sample.generate_scene",
                        "seeds": list(TRAIN_SEEDS), "size_px": SCENE_SIZE, "share": round(shares[-1], 4)})
        held = WaldPatchDataset(generated_scenes(sensor, (VAL_SEED,)), sensor)
        validation[sensor] = PatchStream(held, GridPatchSampler(held, patch, limit=VAL_PATCHES))
    if group == "qb":
        scene, description = real_north_half()
        dataset = WaldPatchDataset([scene], "qb")
        streams.append(PatchStream(dataset, RandomPatchSampler(dataset, patch, seed=SEED)))
        names.append("QuickBird Toulouse north half")
        shares.append(REAL_SHARE)
        sources.append({**description, "share": round(REAL_SHARE, 4)})
    stream = mix_streams(streams, shares, seed=SEED, names=names)
    return stream, validation, {
        "kind": "wald-patches", "protocol": "Wald reduced resolution at ratio 4 (spatialx.training.WaldPatchDataset: "
        "MS degraded with the sensor's MTF-matched filter and decimated, PAN reduced onto the MS grid, the original MS "
        "the target)", "sources": sources, "patch": patch,
        "validation": f"{VAL_PATCHES} patches on a grid over one generated scene per sensor (seed {VAL_SEED}, "
                      f"{SCENE_SIZE} px), never trained on"}


def _validation(model, validation: dict[str, Any]) -> dict[str, Any]:
    import torch

    from spatialx.training.loop import validate

    class Exp(torch.nn.Module):  # the upsampled MS: the baseline every network must beat
        def forward(self, ms, pan):
            return ms

    figures: dict[str, Any] = {}
    for sensor, data in validation.items():
        row = {}
        for name, network in (("network", model), ("exp", Exp())):
            scores = validate(network, data, max_value=data.max_value, ratio=data.ratio, batch_size=4)
            row[name] = {key: round(float(value), 5) for key, value in scores.items()}
        figures[sensor] = row
    return figures


def _fit(name: str, steps: int | None, init: Path | None) -> tuple[Any, list[dict[str, Any]]]:
    """Train target ``name`` (after the target it continues from, or from the ``init`` weights); returns the
    network (its EMA weights) and one record per training stage, first stage first."""
    import torch

    from spatialx.models.registry import create_model, model_config
    from spatialx.models.weights import load_model, sha256
    from spatialx.training.loop import train

    target = TARGETS[name]
    stage_steps = target.steps if steps is None else steps
    stages: list[dict[str, Any]] = []
    if target.init is None:
        torch.manual_seed(SEED)
        model = create_model(target.architecture, target.config)
    elif init is not None:
        model, card = load_model(init, architecture=target.architecture)
        if card["config"] != model_config(target.architecture, target.config):
            raise SystemExit(f"{init}: its configuration is not {target.architecture} {target.config}'s")
        stages.append({"target": target.init, "from_weights": init.name, "sha256": sha256(init),
                       "summary": card.get("summary"), **card.get("training", {})})
    else:
        model, stages = _fit(target.init, steps, None)
    began = time.perf_counter()
    stream, validation, description = build_data(target.config, target.patch)
    print(f"[{name}] {sum(p.numel() for p in model.parameters()):,} parameters; data ready in "
          f"{time.perf_counter() - began:.1f} s; {stage_steps} steps of {target.batch} x {target.patch} px"
          + (f", continuing {target.init}" if target.init else ""), flush=True)
    every = max(1, stage_steps // 10)

    def progress(step, total, loss, rate, _metrics):
        if step % every == 0 or step == total:
            print(f"[{name}] step {step}/{total} loss {loss:.5f} ({rate:.1f} samples/s, "
                  f"{time.perf_counter() - began:.0f} s)", flush=True)

    result = train(model, stream, steps=stage_steps, batch_size=target.batch, lr=target.lr, loss=LOSS, seed=SEED,
                   schedule=target.schedule, device="cpu", progress=progress)
    stages.append({"target": name, "data": description, "steps": result.steps, "batch_size": target.batch,
                   "patch": target.patch, "lr": target.lr, "schedule": target.schedule, "weight_decay": 1e-6,
                   "clip": 0.03, "ema": 0.995, "loss": LOSS, "seed": SEED, "optimizer": "AdamW", "device": "cpu",
                   "seconds": round(time.perf_counter() - began, 1),
                   "first_train_loss": result.losses[0] if result.losses else None,
                   "final_train_loss": result.final_loss, "validation_data": validation})
    return model, stages


def train_target(name: str, out: Path, threads: int, command: str, steps: int | None = None,
                 keep_worse: bool = False, init: Path | None = None) -> dict[str, Any] | None:
    """Train one target and write its weights and card; None (nothing written) when the network does not beat
    ``exp`` in Q2n on every validation scene, unless ``keep_worse``."""
    from spatialx.models.registry import model_config
    from spatialx.models.weights import save_weights
    from spatialx.sensors import get_sensor

    target = TARGETS[name]
    began = time.perf_counter()
    model, stages = _fit(name, steps, init)
    model.eval()
    figures = _validation(model, stages[-1].pop("validation_data"))
    seconds = time.perf_counter() - began
    for sensor, row in figures.items():
        print(f"[{name}] validation {sensor}: network Q2n {row['network']['Q2n']:.4f} SAM {row['network']['SAM']:.3f} "
              f"ERGAS {row['network']['ERGAS']:.3f} | exp Q2n {row['exp']['Q2n']:.4f} SAM {row['exp']['SAM']:.3f} "
              f"ERGAS {row['exp']['ERGAS']:.3f}", flush=True)
    worse = [sensor for sensor, row in figures.items() if row["network"]["Q2n"] <= row["exp"]["Q2n"]]
    if worse and not keep_worse:
        print(f"[{name}] NOT written: no better than exp in Q2n on {', '.join(worse)} (--keep-worse writes it)",
              flush=True)
        return None
    config = target.config
    kwargs = model_config(target.architecture, config)
    profile = get_sensor(config)
    sensors = list(SENSORS[config])
    real = " and the real QuickBird Toulouse pair's northern half" if config == "qb" else ""
    schedule = " then ".join(f"{stage['steps']} steps ({stage['batch_size']} x {stage['patch']} px)"
                             for stage in stages)
    last = stages[-1]
    card = {
        "architecture": target.architecture,
        "config": kwargs,
        "config_name": config,
        "task": "pansharpen",
        "roles": ["ms", "pan"],
        "sensor": config,
        "bands": list(profile.band_names),
        "max_value": profile.max_value,
        "ratio": int(kwargs.get("ratio", 4)),
        "parameters": sum(p.numel() for p in model.parameters()),
        "bundled": True,
        "summary": (f"{schedule} on Wald patches of generated {', '.join(sensors)} "
                    f"scenes (seeds {TRAIN_SEEDS[0]}-{TRAIN_SEEDS[-1]}, {SCENE_SIZE} px){real}"),
        # the last stage's fields at the top (as single-stage cards have them), every stage under "stages"
        "training": {**{key: value for key, value in last.items() if key != "target"}, "threads": threads,
                     "seconds": round(seconds, 1), "script": "scripts/train_default_weights.py", "command": command,
                     **({"stages": stages} if len(stages) > 1 else {})},
        "validation": figures,
    }
    model.to("cpu")
    out.mkdir(parents=True, exist_ok=True)
    path = save_weights(model, out / f"{name}.safetensors", card)
    path.chmod(0o644)  # package data: readable by everyone (the atomic writer's temporary file is private)
    print(f"[{name}] wrote {path} ({path.stat().st_size / 1e6:.2f} MB) in {seconds:.0f} s", flush=True)
    return card


def _check_init(parser: argparse.ArgumentParser, init: Path, target: Target) -> None:
    """Refuse, before any training, ``--init`` weights that cannot be read or are another network's."""
    from spatialx.errors import SpatialxError
    from spatialx.models.weights import read_card

    try:
        card = read_card(init)
    except SpatialxError as exc:
        parser.error(f"--init {exc}")
    if card.get("architecture") != target.architecture:
        parser.error(f"--init {init}: weights of {card.get('architecture')!r}, not {target.architecture!r}; "
                     f"give a {target.init} file")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SHIPPED), help="comma-separated targets (default: the shipped "
                                                                  f"ones); any of {', '.join(TARGETS)}")
    parser.add_argument("--keep-worse", action="store_true",
                        help="write weights even when they do not beat exp on every validation scene")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: the package's)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--steps", type=int, default=None, help="override every target's steps (quick checks)")
    parser.add_argument("--init", type=Path, default=None,
                        help="weights of the target the (one) given target continues from, instead of training it "
                             "first (e.g. a spaxfus-wv3-32px file)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    if args.init is not None and (len(names) != 1 or TARGETS[names[0]].init is None):
        parser.error("--init needs exactly one target that continues another (" +
                     ", ".join(n for n, t in TARGETS.items() if t.init) + ")")
    if args.init is not None and not args.init.is_file():
        parser.error(f"--init {args.init}: no such file")
    if args.init is not None:
        _check_init(parser, args.init, TARGETS[names[0]])
    if any(TARGETS[n].config == "qb" for n in names) and not all((REAL / f).is_file() for f in REAL_FILES):
        parser.error(f"the 4-band weights use the real QuickBird pair, not found in {REAL}")
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(variable, str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    command = shlex.join(["python", "scripts/train_default_weights.py", *(argv if argv is not None else sys.argv[1:])])
    began = time.perf_counter()
    for name in names:
        train_target(name, args.out, args.threads, command, args.steps, args.keep_worse, args.init)
    print(f"done: {', '.join(names)} in {time.perf_counter() - began:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
