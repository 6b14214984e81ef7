"""Evaluation harness: dataset loaders, one-pass metrics, OpenCV baselines and the CLI.

``python -m meta_tracker_ros.evaluation --help`` for usage. Modules:

* :mod:`.datasets` - loaders for shared/data, GOT-10k, LaSOT, VOT and DAVIS (0-based xywh GT);
* :mod:`.metrics` - success AUC, precision@20, normalized precision, mask J (pure numpy);
* :mod:`.baselines` - OpenCV CSRT / KCF behind the tracker interface;
* :mod:`.runner` - timing and per-sequence / mean result objects;
* :mod:`.report` - markdown table, stdout summary, plots.

Nothing in ``core`` or ``ros`` imports this package; it depends on them, not the reverse.
"""
