"""Fusion methods: one registry for classical methods and networks, one interface for all of them."""

from spatialx.methods.base import FusionMethod, SceneSample
from spatialx.methods.registry import MethodInfo, create_method, get_method_info, list_methods, register

__all__ = ["FusionMethod", "MethodInfo", "SceneSample", "create_method", "get_method_info", "list_methods",
           "register"]
