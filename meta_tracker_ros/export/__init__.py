"""Offline tools for the backbone: ONNX export CLI and runtime benchmark (no ROS).

The code they drive (export, metadata checks, TensorRT engine cache and build) is runtime code
and lives in :mod:`meta_tracker_ros.core.backbone`; nothing in the core imports this package.
"""
