"""Training: the pipeline, the scikit-learn model builder and the metrics."""

from modelloop.training.estimator import build_pipeline, resolve_estimator
from modelloop.training.metrics import score
from modelloop.training.pipeline import TrainingResult, git_sha, load_labelled_window, train

__all__ = [
    "TrainingResult",
    "build_pipeline",
    "git_sha",
    "load_labelled_window",
    "resolve_estimator",
    "score",
    "train",
]
