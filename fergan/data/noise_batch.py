"""A random training batch with valid labels, for benchmarks and tests (no data set needed)."""

import numpy as np


def random_batch(config, rng: np.random.Generator, side: bool = False) -> dict[str, np.ndarray]:
    """A global batch of uniform noise images with valid labels, [B, S, S, c]; with `side`, a
    noise side image `s` like x (a method with batch_features=('side',))."""
    b, s, c, k = (
        config.train.batch_size,
        config.model.image_size,
        config.model.channels,
        config.model.num_classes,
    )
    y = rng.integers(0, k, b).astype(np.int32)
    extra = {"s": rng.uniform(-1, 1, (b, s, s, c)).astype(np.float32)} if side else {}
    return extra | {
        "x": rng.uniform(-1, 1, (b, s, s, c)).astype(np.float32),
        "x_pr": rng.uniform(-1, 1, (b, s, s, c)).astype(np.float32),
        "y": y,
        "y_target": ((y + rng.integers(1, k, b)) % k).astype(np.int32),
    }
