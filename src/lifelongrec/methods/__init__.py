"""Continual-learning methods: one file each, registered by name (see base.py for the contract)."""

from .base import LoadedBase, Method, TaskInfo, build_method
from .registry import METHODS, method_class, settings_class

__all__ = ["METHODS", "LoadedBase", "Method", "TaskInfo", "build_method", "method_class", "settings_class"]
