"""Frozen backbone runtimes behind one interface (:class:`Backbone`)."""

from meta_tracker_ros.core.backbone.base import LITE0_LEVELS, Backbone, BackboneSpec
from meta_tracker_ros.core.backbone.factory import create_backbone

__all__ = ["LITE0_LEVELS", "Backbone", "BackboneSpec", "create_backbone"]
