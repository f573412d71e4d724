"""``spatialx export WEIGHTS OUT.onnx``: a network's safetensors weights as an ONNX model for ONNX Runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spatialx.cli import options as opt


def command(
    weights: Annotated[Path, typer.Argument(help="Network weights (.safetensors, with their .json card).",
                                            show_default=False)],
    output: Annotated[Path, typer.Argument(help="ONNX model to write (.onnx).", show_default=False)],
    opset: Annotated[int, typer.Option("--opset", min=7, help="ONNX opset version.")] = 18,
    tile: Annotated[int, typer.Option("--tile", min=16, help="Side of the example tile traced and checked "
                                                             "(batch, height and width stay dynamic).")] = 256,
    overwrite: opt.Overwrite = False,
    quiet: opt.Quiet = False,
) -> None:
    """Export a network to ONNX (dynamic batch, height and width; the weights card in the model's metadata) and
    check it with ONNX Runtime against PyTorch on a random tile."""
    from spatialx.errors import OutputError
    from spatialx.io.outputs import OutputPlan
    from spatialx.models.onnx import export_weights
    from spatialx.models.weights import weight_files

    plan = OutputPlan(weight_files(weights), overwrite=overwrite)
    plan.add(output, what="ONNX model", kind="sidecar")
    if output.suffix.lower() != ".onnx":
        raise OutputError(f"ONNX model must be named .onnx, not {output.suffix or 'without a suffix'}", path=output,
                          hint=f"name it {output.stem}.onnx")
    result = export_weights(weights, output, opset=opset, tile=tile)
    if not quiet:
        shape = "x".join(map(str, result.checked_shape))
        typer.echo(f"wrote {result.path} (opset {result.opset}, {result.exporter} exporter, inputs "
                   f"{', '.join(result.inputs)}; ONNX Runtime vs PyTorch on {shape}: "
                   f"max abs diff {result.max_abs_diff:.2e})")
