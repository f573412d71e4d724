"""One registry of network architectures: ``create_model(name, config, **overrides)``.

Each architecture is defined once (one module each) and registered lazily as ``"module:attribute"`` with named
configurations per sensor or task (band count, ratio, widths), so listing models imports no network code.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from spatialx.errors import MethodError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    entry: str
    configs: Mapping[str, Mapping[str, Any]]
    tasks: tuple[str, ...]
    summary: str
    #: What the paper reports, for comparison in ``spatialx models`` (params, gflops, and the config they are for).
    paper: Mapping[str, Any] = field(default_factory=dict)
    #: Per task, the configurations that serve any band count, the default first: their ``bands`` and
    #: ``guide_bands`` are replaced by the inputs' (hyperspectral cubes come with as many bands as the sensor and
    #: the user's selection leave).
    task_configs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: The training recipe (loss, optimizer, lr, weight_decay, schedule, clip, ema, augment) over LE-Mamba's
    #: defaults: :mod:`spatialx.training.recipes`. ``spatialx train`` and scene adaptation follow it.
    recipe: Mapping[str, Any] = field(default_factory=dict)

    def config(self, name: str) -> dict[str, Any]:
        if name not in self.configs:
            raise MethodError(f"{self.name} has no configuration {name!r}",
                              hint=f"choose one of: {', '.join(self.configs)}")
        return dict(self.configs[name])

    def config_for_bands(self, bands: int) -> str:
        """The first configuration whose band count matches ``bands``."""
        for name, cfg in self.configs.items():
            if cfg.get("bands") == bands:
                return name
        known = ", ".join(f"{n} ({c.get('bands')} bands)" for n, c in self.configs.items())
        raise MethodError(f"{self.name} has no configuration for {bands} bands", hint=f"configurations: {known}")

    def config_for(self, task: str, bands: int, guide_bands: int = 1, name: str | None = None,
                   ratio: int | None = None) -> tuple[str, dict[str, Any]]:
        """The configuration (its name and keyword arguments) for ``task`` with these band counts.

        ``name`` picks one; otherwise the first of the task's configurations whose band counts match exactly, else
        the task's any-band-count configuration (:attr:`task_configs`). A configuration serving any band count takes
        the inputs' counts (and ``ratio``, when given). The configurations a task lists in :attr:`task_configs` are
        that task's; the others are pansharpening's.
        """
        if task not in self.tasks:
            raise MethodError(f"{self.name} is not a network for {task}", hint=f"it serves {', '.join(self.tasks)}")
        any_count = self.task_configs.get(task, ())
        if name is None:
            listed = {n for names in self.task_configs.values() for n in names}
            own = any_count or tuple(n for n in self.configs if n not in listed)
            name = next((n for n in own if self.configs[n].get("bands") == bands
                         and self.configs[n].get("guide_bands", 1) == guide_bands), None)
        if name is None and any_count:
            name = any_count[0]
        if name is None:
            self.config_for_bands(bands)  # raises, listing the configurations
        kwargs = self.config(name)  # type: ignore[arg-type]
        if name in any_count:
            kwargs.update(bands=bands, guide_bands=guide_bands)
            if ratio is not None and "ratio" in kwargs:
                kwargs["ratio"] = int(ratio)
        for key, given in (("bands", bands), ("guide_bands", guide_bands)):
            if kwargs.get(key, 1 if key == "guide_bands" else given) != given:
                raise MethodError(f"{self.name} configuration {name!r} takes {kwargs.get(key, 1)} "
                                  f"{key.replace('_', ' ')}, the inputs have {given}",
                                  hint=f"configurations: {', '.join(self.configs)}")
        return name, kwargs  # type: ignore[return-value]


_MODELS: dict[str, ModelSpec] = {}


def _load_zoo() -> None:
    """Register the built-in networks (``spatialx.models.zoo``) on first use; it imports no network code."""
    import spatialx.models.zoo  # noqa: F401


def register_model(spec: ModelSpec) -> None:
    if spec.name in _MODELS:
        raise ValueError(f"model {spec.name!r} is already registered")
    _MODELS[spec.name] = spec


def get_model_spec(name: str) -> ModelSpec:
    _load_zoo()
    if name not in _MODELS:
        raise MethodError(f"unknown network {name!r}", hint=f"choose one of: {', '.join(_MODELS)}")
    return _MODELS[name]


def list_models() -> list[ModelSpec]:
    _load_zoo()
    return list(_MODELS.values())


def create_model(name: str, config: str | None = None, **overrides: Any):
    """Build architecture ``name`` with configuration ``config`` (default: its first) updated by ``overrides``."""
    spec = get_model_spec(name)
    kwargs = spec.config(config or next(iter(spec.configs)))
    kwargs.update(overrides)
    module_name, _, attribute = spec.entry.partition(":")
    factory = getattr(importlib.import_module(module_name), attribute)
    return factory(**kwargs)


def model_config(name: str, config: str | None = None, **overrides: Any) -> dict[str, Any]:
    """The full keyword arguments ``create_model`` would use (written into weight cards)."""
    spec = get_model_spec(name)
    kwargs = spec.config(config or next(iter(spec.configs)))
    kwargs.update(overrides)
    return kwargs
