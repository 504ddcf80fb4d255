"""Continual-learning methods: one file each, registered by name (see base.py for the contract)."""

from .base import METHODS, Method, TaskInfo, build_method

__all__ = ["METHODS", "Method", "TaskInfo", "build_method"]
