"""Training: the pipeline and the scikit-learn model builder (the metrics are `modelloop.stats`)."""

from modelloop.training.estimator import build_pipeline, resolve_estimator
from modelloop.training.pipeline import TrainingResult, git_sha, load_labelled_window, train

__all__ = [
    "TrainingResult",
    "build_pipeline",
    "git_sha",
    "load_labelled_window",
    "resolve_estimator",
    "train",
]
