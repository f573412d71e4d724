"""Lazy package attributes, so that importing a package does not import torch or GDAL until a name is used."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_attributes(package: str, names: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for a package whose ``names`` map an attribute to ``"module"`` or
    ``"module:attribute"``."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = names[name].partition(":")
        if not attribute and module.rsplit(".", 1)[-1] == name:
            return import_module(module)  # a submodule exposed lazily, e.g. spatialx.xr
        return getattr(import_module(module), attribute or name)

    def __dir__() -> list[str]:
        return sorted([*import_module(package).__dict__, *names])

    return __getattr__, __dir__
