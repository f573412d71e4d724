"""One registry for every fusion method, with lazy entries.

Entries are ``"module:attribute"`` strings so that listing methods (and ``spatialx --help``) imports neither torch
nor any method module; a method's module is imported only when the method is created.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from spatialx.errors import MethodError
from spatialx.sensors import SensorProfile


@dataclass(frozen=True)
class MethodInfo:
    name: str
    entry: str
    tasks: tuple[str, ...]
    kind: str  # "classical" or "network"
    summary: str


_REGISTRY: dict[str, MethodInfo] = {}


def register(name: str, entry: str, tasks: tuple[str, ...], kind: str, summary: str) -> None:
    if name in _REGISTRY:
        raise ValueError(f"method {name!r} is already registered")
    _REGISTRY[name] = MethodInfo(name, entry, tasks, kind, summary)


def list_methods(task: str | None = None) -> list[MethodInfo]:
    return [info for info in _REGISTRY.values() if task is None or task in info.tasks]


def get_method_info(name: str, task: str | None = None) -> MethodInfo:
    info = _REGISTRY.get(name.lower())
    if info is None or (task is not None and task not in info.tasks):
        names = ", ".join(m.name for m in list_methods(task))
        where = f" for {task}" if task else ""
        raise MethodError(f"unknown method {name!r}{where}", hint=f"choose one of: {names}")
    return info


def create_method(name: str, sensor: SensorProfile, ratio: float, task: str | None = None, **options: Any):
    """Instantiate a registered method for ``sensor`` at ``ratio``."""
    info = get_method_info(name, task)
    module_name, _, attribute = info.entry.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise MethodError(f"method {name!r} is not available in this installation ({exc})",
                          hint="install the extra it needs, e.g. pip install 'spatialx[gpu]'") from None
    factory = getattr(module, attribute)
    try:
        return factory(sensor, ratio, **options)
    except TypeError as exc:
        raise MethodError(str(exc)) from None


_PAN = ("pansharpen",)
# Listed in this order by `spatialx methods` and `evaluate`: reference, component substitution, then MRA.
register("exp", "spatialx.methods.classical.simple:Expanded", _PAN, "classical",
         "MS resampled onto the PAN grid (cubic); the reference every method must beat")
register("brovey", "spatialx.methods.classical.simple:Brovey", _PAN, "classical",
         "weighted Brovey transform, as GDAL's pansharpening")
register("bt-h", "spatialx.methods.classical.brovey_haze:BroveyHaze", _PAN, "classical",
         "Brovey transform with haze correction and regression intensity (Lolli et al. 2017)")
register("gsa", "spatialx.methods.classical.gsa:GSA", _PAN, "classical",
         "Gram-Schmidt adaptive (Aiazzi et al. 2007), regression weights from the whole scene")
register("bdsd", "spatialx.methods.classical.bdsd:BDSD", _PAN, "classical",
         "band-dependent spatial detail (Garzelli et al. 2008), MMSE injection from one global block")
register("pracs", "spatialx.methods.classical.pracs:PRACS", _PAN, "classical",
         "partial replacement adaptive component substitution (Choi et al. 2011)")
register("mtf-glp", "spatialx.methods.classical.mtf_glp:MTFGLP", _PAN, "classical",
         "MTF-matched generalised Laplacian pyramid, additive injection of the band-equalised PAN detail")
register("mtf-glp-fs", "spatialx.methods.classical.mtf_glp:MTFGLPFS", _PAN, "classical",
         "MTF-GLP with full-scale regression injection gains (Vivone 2018)")
register("mtf-glp-hpm", "spatialx.methods.classical.mtf_glp:MTFGLPHPM", _PAN, "classical",
         "MTF-matched generalised Laplacian pyramid, high-pass modulation injection")
register("awlp", "spatialx.methods.classical.awlp:AWLP", _PAN, "classical",
         "additive wavelet luminance proportional (Otazu et al. 2005)")
register("pnn", "spatialx.methods.network:PNNMethod", _PAN, "network",
         "PNN (Masi et al. 2016), 3-layer CNN; needs --weights or --adapt-steps")
register("lemamba", "spatialx.methods.network:LEMambaMethod", _PAN, "network",
         "LE-Mamba (Cao et al. 2024), local-enhanced vision Mamba U-Net; needs --weights or --adapt-steps")
