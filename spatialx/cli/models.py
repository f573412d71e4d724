"""``spatialx models``: every fusion method with its size -- parameters and GFLOPs at 64 x 64 for the networks (next
to the paper's figures), 0 parameters for the classical methods -- and the weights bundled with the package."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from spatialx.cli import options as opt

#: Input size (pixels, square) of the GFLOPs column, the size the fusion papers report FLOPs at.
FLOPS_SIZE = 64


def _network_rows() -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """One row per (network, configuration) and the JSON entry of each network (its default configuration)."""
    from spatialx.models.flops import count_gflops, count_params, network_inputs
    from spatialx.models.registry import create_model, list_models

    rows: list[dict[str, Any]] = []
    entries: dict[str, dict[str, Any]] = {}
    for spec in list_models():
        default = spec.paper.get("config") if spec.paper.get("config") in spec.configs else next(iter(spec.configs))
        for config_name, config in spec.configs.items():
            # a configuration a task lists is that task's; the others are pansharpening's (ModelSpec.config_for)
            tasks = [task for task, names in spec.task_configs.items() if config_name in names] or \
                [task for task in spec.tasks if task not in spec.task_configs]
            row: dict[str, Any] = {"name": spec.name, "config": config_name, "kind": "network", "tasks": tasks,
                                   "params": None, "gflops": None, "paper": "", "summary": spec.summary}
            try:
                # On the meta device shapes propagate without arithmetic: the count costs no compute.
                network = create_model(spec.name, config_name).to("meta")
                row["params"] = count_params(network)
                inputs = tuple(t.to("meta") for t in network_inputs(config, FLOPS_SIZE))
                row["gflops"] = round(count_gflops(network, inputs), 3)
            except Exception as exc:  # one broken network must not hide the others
                row["summary"] = f"could not be measured: {exc}"
            paper = spec.paper if config_name == spec.paper.get("config") else spec.paper.get(config_name)
            if paper:
                params, gflops = paper.get("params"), paper.get("gflops")
                row["paper"] = " / ".join(part for part in (
                    f"{params / 1e6:.3g} M" if params else "", f"{gflops:g} G" if gflops else "") if part)
            rows.append(row)
            entry = entries.setdefault(spec.name, {"tasks": list(spec.tasks), "configs": {}})
            entry["configs"][config_name] = {"params": row["params"], "gflops": row["gflops"], "tasks": tasks,
                                             **({"paper": paper} if paper else {})}
            if config_name == default:
                entry.update(params=row["params"], gflops=row["gflops"], config=config_name)
    return rows, entries


def _method_rows(networks: set[str]) -> list[dict[str, Any]]:
    """The registered methods that are not networks of the model registry (classical: 0 parameters)."""
    from spatialx.methods import list_methods

    rows: dict[str, dict[str, Any]] = {}
    for info in list_methods():
        if info.name in networks:
            continue
        if info.name in rows:  # one name, task-specific implementations (gsa for pansharpen and hmif)
            rows[info.name]["tasks"] += [task for task in info.tasks if task not in rows[info.name]["tasks"]]
            continue
        classical = info.kind == "classical"
        rows[info.name] = {"name": info.name, "config": "", "kind": info.kind, "tasks": list(info.tasks),
                           "params": 0 if classical else None, "gflops": None, "paper": "", "summary": info.summary}
    return list(rows.values())


def _bundled_rows() -> list[dict[str, Any]]:
    """The weights shipped with the package, from their cards: what they fit and what they were trained on."""
    from spatialx.models.bundled import list_bundled

    rows = []
    for weights in list_bundled():
        training = weights.card.get("training") or {}
        rows.append({"file": weights.name, "architecture": weights.architecture, "config": weights.config_name,
                     "task": weights.task, "bands": weights.bands, "guide_bands": weights.guide_bands,
                     "sha256": weights.sha256, "steps": training.get("steps"), "summary": weights.summary,
                     "validation": weights.card.get("validation"),
                     "trained_by": training.get("command") or training.get("script")})
    return rows


def command(
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="Also write {name: {params, gflops, tasks}} to this JSON file (networks at their "
                       "sensor-default configuration, every configuration with its tasks, parameters and GFLOPs "
                       "under \"configs\"; networks with bundled weights list them under \"bundled\").",
        show_default=False)] = None,
    overwrite: opt.Overwrite = False,
) -> None:
    """List the fusion methods with their size: parameters and GFLOPs at 64 x 64 (1 MAC = 1 FLOP) per network
    configuration, next to the paper's figures; classical methods have no parameters. Then the bundled weights:
    what each fits and what it was trained on."""
    import json

    from rich.console import Console
    from rich.table import Table

    from spatialx.io.outputs import OutputPlan, atomic_write_text

    if json_path is not None:  # checked before the networks are measured (seconds), like every output
        OutputPlan((), overwrite=overwrite).add(json_path, what="JSON output", kind="sidecar")
    net_rows, entries = _network_rows()
    method_rows = _method_rows(set(entries))
    table = Table(title="Methods and networks", caption=(
        f"GFLOPs: one forward pass, batch 1, {FLOPS_SIZE}x{FLOPS_SIZE} input, 1 multiply-add = 1 FLOP (fvcore/thop "
        "convention), selective scans counted analytically; paper: the figures the paper reports"),
        caption_justify="left")
    for column in ("name", "config", "kind", "tasks", "params", "GFLOPs", "paper"):
        table.add_column(column, justify="right" if column in ("params", "GFLOPs") else "left")
    for row in net_rows + method_rows:
        params = "?" if row["params"] is None else f"{row['params']:,}"
        gflops = "-" if row["gflops"] is None else f"{row['gflops']:.3f}"
        table.add_row(row["name"], row["config"], row["kind"], ", ".join(row["tasks"]), params, gflops, row["paper"])
    console = Console()
    console.print(table)
    bundled = _bundled_rows()
    if bundled:
        weights_table = Table(title="Bundled weights (used when a network gets no --weights; --adapt-steps "
                                    "fine-tunes them, --scratch ignores them)", caption_justify="left",
                              caption="cards next to each file in spatialx/models/weights/ state the training "
                                      "data, recipe and validation in full")
        for column in ("weights", "task", "bands", "steps", "trained on", "sha256"):
            weights_table.add_column(column, justify="right" if column in ("bands", "steps") else "left",
                                     no_wrap=column in ("weights", "sha256"))
        for row in bundled:
            weights_table.add_row(Path(row["file"]).stem, row["task"], str(row["bands"]), str(row["steps"]),
                                  row["summary"], row["sha256"][:8])
        console.print(weights_table)

    if json_path is not None:
        for row in method_rows:
            entries[row["name"]] = {"params": row["params"], "gflops": row["gflops"], "tasks": row["tasks"]}
        for row in bundled:
            if row["architecture"] in entries:
                entries[row["architecture"]].setdefault("bundled", []).append(row)
        atomic_write_text(json_path, json.dumps(entries, indent=2) + "\n")
