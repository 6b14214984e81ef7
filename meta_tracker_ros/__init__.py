"""meta_tracker_ros: online-adapted visual tracking (box + mask) for ROS 2.

Subpackages: ``core`` (the tracker, no ROS imports), ``ros`` (nodes), ``evaluation``
(benchmark harness), ``export`` (ONNX / TensorRT), ``training`` (meta-training), ``tools``.

The generated interface modules (``meta_tracker_ros.msg``, ``meta_tracker_ros.srv``) live in the
colcon install space, not in the source tree. Extending ``__path__`` lets them import even when
the source checkout comes first on ``sys.path`` (running from the repository root).
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
