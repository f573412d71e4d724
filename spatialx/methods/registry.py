"""One registry for every fusion method, with lazy entries.

Entries are ``"module:attribute"`` strings so that listing methods (and ``spatialx --help``) imports neither torch
nor any method module; a method's module is imported only when the method is created.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spatialx.errors import MethodError
from spatialx.sensors import SensorProfile

if TYPE_CHECKING:
    from spatialx.methods.base import FusionMethod, MethodContext


@dataclass(frozen=True)
class MethodInfo:
    name: str
    #: ``"module:attribute"`` (imported on first use), or the factory itself (methods defined in a script).
    entry: str | Callable[..., FusionMethod]
    kind: str  # "classical" or "network"
    summary: str
    classical_tasks: tuple[str, ...] = ()
    #: For networks: the architecture in the model registry, which says which tasks it serves.
    model: str | None = None

    @property
    def tasks(self) -> tuple[str, ...]:
        if self.model is None:
            return self.classical_tasks
        from spatialx.models.registry import get_model_spec  # declarative: imports no network code
        from spatialx.tasks import list_tasks

        # An architecture may be built for a task whose pipeline spec this installation does not have yet.
        known = {task.name for task in list_tasks()}
        return tuple(task for task in get_model_spec(self.model).tasks if task in known)


_REGISTRY: dict[str, list[MethodInfo]] = {}


def register(name: str, entry: str | Callable[..., FusionMethod], *, kind: str, summary: str,
             tasks: tuple[str, ...] = (), model: str | None = None) -> None:
    """Register a method: a classical one names its ``tasks``; a network names its ``model`` (whose registry
    entry lists the tasks), so the two registries cannot disagree. One name may be registered again for other
    tasks (``gsa`` for pansharpening and, as hypersharpening, for HS + MS): the task picks the implementation."""
    if (model is None) == (kind == "network"):
        raise ValueError(f"method {name!r}: networks name a model, classical methods do not")
    if model is not None and tasks:
        raise ValueError(f"method {name!r}: a network's tasks come from the model registry")
    info = MethodInfo(name, entry, kind, summary, tuple(tasks), model)
    for existing in _REGISTRY.get(name, []):
        if existing.model is not None or model is not None or set(existing.tasks) & set(info.tasks):
            raise ValueError(f"method {name!r} is already registered for {', '.join(existing.tasks)}")
    _REGISTRY.setdefault(name, []).append(info)


def list_methods(task: str | None = None) -> list[MethodInfo]:
    return [info for infos in _REGISTRY.values() for info in infos if task is None or task in info.tasks]


def get_method_info(name: str, task: str | None = None) -> MethodInfo:
    """The method called ``name`` (case-insensitive) that serves ``task`` (any task when None)."""
    infos = _REGISTRY.get(name.lower(), [])
    info = next((i for i in infos if task is None or task in i.tasks), None)
    if info is None:
        names = ", ".join(dict.fromkeys(m.name for m in list_methods(task)))
        where = f" for {task}" if task else ""
        raise MethodError(f"unknown method {name!r}{where}", hint=f"choose one of: {names}")
    return info


def create_method(name: str, context: MethodContext | SensorProfile, ratio: float | None = None,
                  task: str | None = None, **options: Any) -> FusionMethod:
    """Instantiate a registered method from a :class:`MethodContext`.

    For scripts, a sensor profile (and ``ratio``, default the sensor's) stands for a context of ``task``
    (default: the method's first task) with that sensor for every role.
    """
    from spatialx.methods.base import MethodContext

    if isinstance(context, MethodContext):
        info = get_method_info(name, context.task.name)
    else:
        info = get_method_info(name, task)
        context = MethodContext.create(task or info.tasks[0], context, ratio)
    factory = info.entry if callable(info.entry) else _import_entry(name, info.entry)
    try:
        return factory(context, **options)
    except TypeError as exc:
        raise MethodError(str(exc)) from None


def method_factory(name: str, task: str | None = None) -> Callable[..., FusionMethod]:
    """The class (or factory) registered as ``name`` for ``task``, imported."""
    info = get_method_info(name, task)
    return info.entry if callable(info.entry) else _import_entry(name, info.entry)


def _import_entry(name: str, entry: str) -> Callable[..., FusionMethod]:
    module_name, _, attribute = entry.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise MethodError(f"method {name!r} is not available in this installation ({exc})",
                          hint="install the extra it needs, e.g. pip install 'spatialx[gpu]'") from None
    return getattr(module, attribute)


def unregister(name: str, task: str | None = None) -> None:
    """Remove a method, or its registration for ``task`` (for methods registered by scripts and tests)."""
    kept = [info for info in _REGISTRY.pop(name, []) if task is not None and task not in info.tasks]
    if kept:
        _REGISTRY[name] = kept


_PAN = ("pansharpen",)
# Listed in this order by `spatialx methods` and `evaluate`: reference, component substitution, then MRA.
register("exp", "spatialx.methods.classical.simple:Expanded", tasks=(*_PAN, "hmif"), kind="classical",
         summary="the low-resolution input resampled onto the output grid (cubic); the reference to beat")
register("brovey", "spatialx.methods.classical.simple:Brovey", tasks=_PAN, kind="classical",
         summary="weighted Brovey transform, as GDAL's pansharpening")
register("bt-h", "spatialx.methods.classical.brovey_haze:BroveyHaze", tasks=_PAN, kind="classical",
         summary="Brovey transform with haze correction and regression intensity (Lolli et al. 2017)")
register("gsa", "spatialx.methods.classical.gsa:GSA", tasks=_PAN, kind="classical",
         summary="Gram-Schmidt adaptive (Aiazzi et al. 2007), regression weights from the whole scene")
register("bdsd", "spatialx.methods.classical.bdsd:BDSD", tasks=_PAN, kind="classical",
         summary="band-dependent spatial detail (Garzelli et al. 2008), MMSE injection from one global block")
register("pracs", "spatialx.methods.classical.pracs:PRACS", tasks=_PAN, kind="classical",
         summary="partial replacement adaptive component substitution (Choi et al. 2011)")
register("mtf-glp", "spatialx.methods.classical.mtf_glp:MTFGLP", tasks=_PAN, kind="classical",
         summary="MTF-matched generalised Laplacian pyramid, additive injection of the band-equalised PAN detail")
register("mtf-glp-fs", "spatialx.methods.classical.mtf_glp:MTFGLPFS", tasks=_PAN, kind="classical",
         summary="MTF-GLP with full-scale regression injection gains (Vivone 2018)")
register("mtf-glp-hpm", "spatialx.methods.classical.mtf_glp:MTFGLPHPM", tasks=_PAN, kind="classical",
         summary="MTF-matched generalised Laplacian pyramid, high-pass modulation injection")
register("awlp", "spatialx.methods.classical.awlp:AWLP", tasks=_PAN, kind="classical",
         summary="additive wavelet luminance proportional (Otazu et al. 2005)")
register("pnn", "spatialx.methods.network:PNNMethod", model="pnn", kind="network",
         summary="PNN (Masi et al. 2016), 3-layer CNN; needs --weights or --adapt-steps")
register("lemamba", "spatialx.methods.network:LEMambaMethod", model="lemamba", kind="network",
         summary="LE-Mamba (Cao et al. 2024), local-enhanced vision Mamba U-Net; needs --weights or --adapt-steps")
register("gsa", "spatialx.methods.classical.hypersharpen:HyperGSA", tasks=("hmif",), kind="classical",
         summary="GSA hypersharpening (Selva et al. 2015): per HS band, a synthetic band regressed from the MS")
register("mtf-glp-hpm", "spatialx.methods.classical.hypersharpen:HyperMTFGLPHPM", tasks=("hmif",), kind="classical",
         summary="MTF-GLP-HPM hypersharpening: each HS band modulated by its MS-regressed synthetic band")
register("cnmf", "spatialx.methods.classical.cnmf:CNMF", tasks=("hmif",), kind="classical",
         summary="coupled NMF unmixing (Yokoya et al. 2012), endmembers fitted on the first pass")
register("exp", "spatialx.methods.classical.temporal:CoarseExpanded", tasks=("stfuse",), kind="classical",
         summary="the coarse image of the prediction date on the fine grid (the coarse sensor alone)")
register("no-change", "spatialx.methods.classical.temporal:NoChange", tasks=("stfuse",), kind="classical",
         summary="the fine image of the nearest pair date, as if nothing changed")
register("coarse-diff", "spatialx.methods.classical.temporal:CoarseDifference", tasks=("stfuse",), kind="classical",
         summary="fine(t_k) + coarse(t_p) - coarse(t_k); pairs weighted by the inverse coarse change")
register("starfm", "spatialx.methods.classical.temporal:STARFM", tasks=("stfuse",), kind="classical",
         summary="STARFM (Gao et al. 2006): similar neighbours in a moving window, spectral/temporal/distance weights")
register("estarfm", "spatialx.methods.classical.temporal:ESTARFM", tasks=("stfuse",), kind="classical",
         summary="ESTARFM (Zhu et al. 2010): two pairs, conversion coefficients regressed over similar pixels")
register("nearest", "spatialx.methods.classical.polsar:C3Nearest", tasks=("polsar",), kind="classical",
         summary="the quad-pol C3 of the pixel each single-pol pixel lies in")
register("bilinear", "spatialx.methods.classical.polsar:C3Bilinear", tasks=("polsar",), kind="classical",
         summary="bilinear C3 (a convex combination: positive semidefinite)")
register("bicubic", "spatialx.methods.classical.polsar:C3Bicubic", tasks=("polsar",), kind="classical",
         summary="cubic convolution of each C3 channel, projected onto the PSD cone")
register("guided", "spatialx.methods.classical.polsar:C3Guided", tasks=("polsar",), kind="classical",
         summary="bilinear C3 guided-filtered by the single-pol intensity, span kept, projected onto the PSD cone")
register("spaxfus", "spatialx.methods.network:SpaXFusMethod", model="spaxfus", kind="network",
         summary="SpaXFus (He et al. 2025), unfolded degradation model with a state-space prior; needs --weights "
                 "or --adapt-steps")
register("rwkvfusion", "spatialx.methods.network:RWKVFusionMethod", model="rwkvfusion", kind="network",
         summary="RWKVFusion (Cao et al.), bidirectional RWKV U-Net with multi-modal fusion; needs --weights or "
                 "--adapt-steps")
register("ssrfn", "spatialx.methods.network:SSRFNMethod", model="ssrfn", kind="network",
         summary="SSRFN (Zhao et al. 2024), CNN-Mamba hyperspectral + multispectral fusion; needs --weights or "
                 "--adapt-steps")
