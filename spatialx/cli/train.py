"""``spatialx train OUT.safetensors --model pnn (--h5 TRAIN.h5 | --scene PAN MS ...)``.

Register with ``app.command("train", cls=TrainCommand, no_args_is_help=True)(command)``: Typer cannot declare a
repeatable option of two values, so :class:`TrainCommand` joins each ``--scene PAN MS`` pair into one value
before Click parses the line.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperCommand

from spatialx.cli import options as opt
from spatialx.errors import SpatialxError

#: Joins the two values of one ``--scene`` (NUL cannot occur in a command-line argument).
PAIR_SEPARATOR = "\0"


def join_scene_pairs(args: list[str]) -> list[str]:
    """``[..., "--scene", PAN, MS, ...]`` -> ``[..., "--scene", "PAN\\0MS", ...]`` (also ``--scene=PAN MS``)."""
    out: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        if token == "--":
            out.extend(args[i:])
            break
        if token == "--scene" and i + 2 < len(args):
            out += [token, f"{args[i + 1]}{PAIR_SEPARATOR}{args[i + 2]}"]
            i += 3
            continue
        if token.startswith("--scene=") and i + 1 < len(args):
            out.append(f"{token}{PAIR_SEPARATOR}{args[i + 1]}")
            i += 2
            continue
        out.append(token)
        i += 1
    return out


class TrainCommand(TyperCommand):
    """The ``train`` command: ``--scene`` takes two values (PAN MS) and may be repeated."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        return super().parse_args(ctx, join_scene_pairs(list(args)))


def split_scene_pairs(values: list[str] | None) -> list[tuple[Path, Path]]:
    pairs = []
    for value in values or []:
        pan, sep, ms = value.partition(PAIR_SEPARATOR)
        if not sep or not pan or not ms:
            raise SpatialxError(f"--scene {value!r}: give two files, --scene PAN MS")
        pairs.append((Path(pan), Path(ms)))
    return pairs


def _dated_path(path: Path) -> Path | tuple[str, Path]:
    """``DATE=PATH`` as ``(date, path)``; a plain path as it is (its product states the date)."""
    date, sep, rest = str(path).partition("=")
    return (date, Path(rest)) if sep and date[:4].isdigit() else path


@contextmanager
def train_progress(total: int, enabled: bool = True) -> Iterator[object]:
    """A Rich bar of steps with the loss, samples/s and the last validation scores; yields the callback."""
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from spatialx.cli.progress import console

    columns = (TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
               TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]}"),
               TextColumn("{task.fields[val]}"), TimeElapsedColumn(), TimeRemainingColumn())
    progress = Progress(*columns, console=console)
    state: dict[str, int] = {}

    def update(step: int, steps: int, loss: float, samples_per_s: float, val: dict[str, float] | None) -> None:
        if "task" not in state:
            progress.start()
            state["task"] = progress.add_task("train", total=steps, completed=step - 1, loss="", rate="", val="")
        fields = {"loss": f"{loss:.4f}", "rate": f"{samples_per_s:.1f} samples/s"}
        if val is not None:
            shown = {"Q2n": ".4f", "SAM": ".2f"} if "Q2n" in val else {"loss": ".4f"}
            fields["val"] = "val " + " ".join(f"{key} {val[key]:{spec}}" for key, spec in shown.items() if key in val)
        progress.update(state["task"], completed=step, total=steps, **fields)

    try:
        yield update
    finally:
        progress.stop()


_RECIPE = "(default: the --model's training recipe)"


def command(
    output: Annotated[Path, typer.Argument(help="Weights to write (.safetensors; its card goes to the .json "
                                                "next to it).", show_default=False)],
    model: Annotated[str, typer.Option("--model", "-m", help="Network architecture, e.g. pnn.")]
    = "pnn",
    config: Annotated[str | None, typer.Option(
        "--config", help="Network configuration, e.g. wv3, qb, gf2 (default: the sensor's).",
        show_default=False)] = None,
    h5: Annotated[Path | None, typer.Option(
        "--h5", help="Training set in HDF5: PanCollection (gt, ms, lms, pan) for pansharpen, or the hyperspectral "
                     "sets' keys (GT, LRHSI, RGB or HRMSI, optionally HSI_up; values in [0, 1]) for hmif.",
        show_default=False)] = None,
    val_h5: Annotated[Path | None, typer.Option(
        "--val-h5", help="Validation set, same format as --h5 (default: the last 10% of --h5 held out).",
        show_default=False)] = None,
    scene: Annotated[list[str] | None, typer.Option(
        "--scene", metavar="PAN MS", help="Train on Wald-protocol patches of this PAN/MS pair (nested grids); "
                                          "repeat for more scenes. The bottom rows are held out for validation.",
        show_default=False)] = None,
    sensor: opt.Sensor = "wv3",
    task: Annotated[str, typer.Option(
        "--task", help="pansharpen (--h5 or --scene PAN MS), hmif (--scene HS MS, read like `spatialx hmif` reads "
                       "them), polsar (--scene SINGLE QUAD on nested grids, the C3 the reference; a single-pol "
                       "image on the C3's own grid, e.g. its HH, simulates the pair from the quad-pol alone) or "
                       "stfuse (--scene FINE COARSE for every pair date of one series, read like `spatialx stfuse` "
                       "reads them; DATE=PATH for files that state no date).")]
    = "pansharpen",
    hs_sensor: Annotated[str, typer.Option("--hs-sensor", help="hmif: sensor profile of the HS cubes.")]
    = "prisma_l2d",
    ms_sensor: Annotated[str, typer.Option("--ms-sensor", help="hmif: sensor profile of the MS images.")]
    = "s2_l2a",
    fine_sensor: Annotated[str, typer.Option("--fine-sensor", help="stfuse: sensor of the fine images (auto: the "
                                                                   "product's).")] = "auto",
    coarse_sensor: Annotated[str, typer.Option("--coarse-sensor", help="stfuse: sensor of the coarse images (auto: "
                                                                       "the product's).")] = "auto",
    fine_bands: Annotated[str | None, typer.Option("--fine-bands", help="stfuse: fine bands to use, as `spatialx "
                                                                        "stfuse --fine-bands`.",
                                                   show_default=False)] = None,
    coarse_bands: Annotated[str | None, typer.Option("--coarse-bands", help="stfuse: coarse bands to use.",
                                                     show_default=False)] = None,
    steps: Annotated[int, typer.Option("--steps", min=0, help="Optimizer steps in total.")] = 1000,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Examples per step.")] = 8,
    patch: Annotated[int, typer.Option("--patch", min=8, help="Patch size in pixels (--scene).")] = 64,
    lr: Annotated[float | None, typer.Option(
        "--lr", min=0.0, help="Learning rate (the peak of a onecycle schedule) " + _RECIPE + ": pnn and lemamba "
                              "1e-3, spaxfus 1e-4.", show_default=False)] = None,
    weight_decay: Annotated[float | None, typer.Option(
        "--weight-decay", min=0.0, help="Weight decay " + _RECIPE + ": pnn and lemamba 1e-6, spaxfus 0.",
        show_default=False)] = None,
    optimizer: Annotated[str | None, typer.Option(
        "--optimizer", help="adamw, adamax or adam " + _RECIPE + ": spaxfus adamax, ssrfn adam, the others adamw.",
        show_default=False)] = None,
    schedule: Annotated[str | None, typer.Option(
        "--schedule", help="Learning-rate schedule, none or onecycle (OneCycleLR over --steps) " + _RECIPE + ": "
                           "spaxfus onecycle, the others none.", show_default=False)] = None,
    clip: Annotated[float | None, typer.Option(
        "--clip", min=0.0, help="Gradient-norm clipping, 0 for none " + _RECIPE + ": spaxfus 0.1, the others "
                                "0.03.", show_default=False)] = None,
    ema: Annotated[float | None, typer.Option(
        "--ema", min=0.0, max=1.0, help="Decay of the weights' moving average, 0 for none " + _RECIPE + ": "
                                        "spaxfus none, the others 0.995.", show_default=False)] = None,
    loss: Annotated[str | None, typer.Option(
        "--loss", help="l1+ssim, l1 or mse " + _RECIPE + ": spaxfus l1, the others l1+ssim.",
        show_default=False)] = None,
    augment: Annotated[bool | None, typer.Option(
        "--augment/--no-augment", help="Random rot90/flip of every example " + _RECIPE + ": spaxfus on, the "
                                       "others off.", show_default=False)] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the initial weights and the patch order.")] = 0,
    device: opt.Device = "auto",
    val_every: Annotated[int | None, typer.Option(
        "--val-every", min=1, help="Validate every N steps (default: at the end only).", show_default=False)] = None,
    checkpoint: Annotated[Path | None, typer.Option(
        "--checkpoint", help="Write a resumable checkpoint (.safetensors) here (default: the --resume file).",
        show_default=False)] = None,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", min=1,
                                                  help="Steps between checkpoints.")] = 500,
    resume: Annotated[Path | None, typer.Option(
        "--resume", help="Continue a run from its checkpoint (same data, --batch and --seed repeat it exactly).",
        show_default=False)] = None,
    workers: Annotated[int, typer.Option("--workers", "-j", min=0, help="Data loader processes (0: in the main "
                                                                        "process).")] = 0,
    overwrite: opt.Overwrite = False,
    quiet: opt.Quiet = False,
) -> None:
    """Train a fusion network on PanCollection HDF5 data or on your own scenes; write weights and a card.

    Options left out follow the network's training recipe (pnn and lemamba: AdamW lr 1e-3, weight decay 1e-6,
    clip 0.03, EMA 0.995, L1 + 0.1 (1 - SSIM); spaxfus: Adamax lr 1e-4 with OneCycle, clip 0.1, L1, rot90/flip
    augmentation); the card records the recipe used.
    """
    from spatialx.cli.progress import console
    from spatialx.training.loop import train_model

    scenes: list[tuple[object, object]] = list(split_scene_pairs(scene))
    if task == "stfuse":
        scenes = [(_dated_path(fine), _dated_path(coarse)) for fine, coarse in scenes]
    with train_progress(steps, enabled=not quiet) as progress:
        done = train_model(output, model=model, config=config, sensor=sensor, h5=h5, val_h5=val_h5,
                           scenes=scenes or None, steps=steps, batch_size=batch, patch=patch, lr=lr,
                           weight_decay=weight_decay, optimizer=optimizer, schedule=schedule, clip=clip, ema=ema,
                           loss=loss, augment=augment, seed=seed, device=device, val_every=val_every,
                           checkpoint=checkpoint or resume, checkpoint_every=checkpoint_every, resume=resume,
                           overwrite=overwrite, workers=workers, progress=progress, task=task,
                           sensors={"hs": hs_sensor, "ms": ms_sensor} if task == "hmif" else
                           {"fine": fine_sensor, "coarse": coarse_sensor} if task == "stfuse" else None,
                           select_bands={key: value for key, value in (("fine", fine_bands),
                                                                       ("coarse", coarse_bands)) if value})
    if not quiet:
        result = done.result
        console.print(f"wrote {done.output} and {done.output.with_suffix('.json')} ({done.card['architecture']} "
                      f"{done.card['config_name']}, {done.card['parameters']:,} parameters, {result.steps} steps, "
                      f"{result.seconds:.1f} s, {result.samples_per_s:.1f} samples/s)")
        if result.val_metrics:
            scores = ", ".join(f"{key} {value:.4f}" for key, value in result.val_metrics.items())
            console.print(f"  validation: {scores}", style="dim")
