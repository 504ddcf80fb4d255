"""Methods by name. Runner, predict, report and the config reach methods only through this registry,
so none of them imports a method's module; a new method is one new file listed in BUILTIN."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config import MethodSettings
    from .base import Method

BUILTIN = ("seqft", "sinmo", "finesmax", "stl", "mtl", "peterrec", "conure", "pcl", "mptrec", "mptrec_faithful")
METHODS: dict[str, type[Method]] = {}


def method_class(name: str) -> type[Method]:
    if name not in METHODS and name in BUILTIN:
        importlib.import_module(f"{__package__}.{name}")  # registers itself on import
    if name not in METHODS:
        raise ConfigError(f"unknown method '{name}' (available: {', '.join(sorted(set(BUILTIN) | set(METHODS)))})")
    return METHODS[name]


def settings_class(name: str) -> type[MethodSettings]:
    return method_class(name).Settings
