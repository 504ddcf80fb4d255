"""Sequence backbones behind one contract (see base.py)."""

from .base import Backbone, BackboneConfig, build_backbone

__all__ = ["Backbone", "BackboneConfig", "build_backbone"]
