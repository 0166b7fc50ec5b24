"""Held-out evaluation of any method's state: the recognizer's accuracy and the method's other
per-example outputs, from its `evaluate_batch` bound to a model and state."""

from collections.abc import Callable

import numpy as np

from fergan.batching import batched_apply

# (x [B, S, S, c], y [B]) -> per-example outputs [B, ...] (a method's evaluate_batch).
BatchOutputs = Callable[[np.ndarray, np.ndarray], dict]

EVAL_BATCH = 64  # Faces per evaluate_batch call; the last batch is padded (one compile).


def predict(
    outputs_of: BatchOutputs, x: np.ndarray, y: np.ndarray, batch_size: int = EVAL_BATCH
) -> dict[str, np.ndarray]:
    """`outputs_of` over [N, S, S, c] faces and labels [N] in fixed-size padded batches.
    Returns the per-example outputs as numpy arrays [N, ...]."""
    return batched_apply(outputs_of, x, y, batch=batch_size)


def summarize(outputs: dict[str, np.ndarray], y: np.ndarray) -> dict[str, float]:
    """Per-example outputs -> metrics: `prediction` -> `accuracy`, `<name>_prediction` ->
    `<name>_accuracy`, any other [N] output -> its mean; `feature` is not a metric."""
    metrics: dict = {}
    for name, values in outputs.items():
        if name == "prediction":
            metrics["accuracy"] = float(np.mean(values == y))
        elif name.endswith("_prediction"):
            metrics[name.removesuffix("_prediction") + "_accuracy"] = float(np.mean(values == y))
        elif name != "feature" and values.ndim == 1:
            metrics[name] = float(np.mean(values))
    metrics["num_examples"] = len(y)
    return metrics


def evaluate(
    outputs_of: BatchOutputs, arrays: dict[str, np.ndarray]
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Held-out metrics (accuracies in [0, 1]) and the per-example outputs; with faces of
    several poses, `accuracy_pose_<yaw>` too (`pose_accuracies`).

    arrays: `x` [N, S, S, c] in [-1, 1], `y` [N], optional `pose` [N] (see
    fergan.data.pipeline.eval_arrays).
    """
    outputs = predict(outputs_of, arrays["x"], arrays["y"])
    metrics = summarize(outputs, arrays["y"])
    if "pose" in arrays:
        metrics |= pose_accuracies(outputs["prediction"], arrays["y"], arrays["pose"])
    return metrics, outputs


def pose_accuracies(prediction: np.ndarray, y: np.ndarray, pose: np.ndarray) -> dict[str, float]:
    """{`accuracy_pose_<yaw>`: accuracy over the faces of that yaw (degrees)} for faces of more
    than one pose (the Multi-PIE protocol's rows); {} when every face has the same pose."""
    poses = np.unique(pose)
    if len(poses) < 2:
        return {}
    hits = prediction == y
    return {f"accuracy_pose_{p}": float(np.mean(hits[pose == p])) for p in poses}
