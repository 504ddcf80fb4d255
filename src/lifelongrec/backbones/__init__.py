"""Sequence backbones behind one contract (see base.py)."""

from .base import Backbone, BackboneConfig, View, build_backbone

__all__ = ["Backbone", "BackboneConfig", "View", "build_backbone"]
