"""A random training batch with valid labels, for benchmarks and tests (no data set needed)."""

import numpy as np

from fergan.data.align import NUM_LANDMARKS


def random_batch(
    config, rng: np.random.Generator, features: tuple[str, ...] = ()
) -> dict[str, np.ndarray]:
    """A global batch of uniform noise images with valid labels, [B, S, S, c]; with the optional
    `features` of a method (`pipeline.BATCH_FEATURES`), their keys too: noise side image `s`,
    masks of ones, a noise `x_neutral`, a noise target face with random landmarks and label,
    noise `x_pair` and `x_own_neutral` faces marked valid."""
    b, s, c, k = (
        config.train.batch_size,
        config.model.image_size,
        config.model.channels,
        config.model.num_classes,
    )
    y = rng.integers(0, k, b).astype(np.int32)
    noise = lambda channels: rng.uniform(-1, 1, (b, s, s, channels)).astype(np.float32)
    extra = {"s": noise(c)} if "side" in features else {}
    if "mask" in features:
        extra["mask"] = np.ones((b, s, s, 1), np.float32)
    if "neutral" in features:
        extra |= {"x_neutral": noise(c), "mask_neutral": np.ones((b, s, s, 1), np.float32)}
    if "target" in features:
        extra |= {
            "x_target": noise(c),
            "g_target": rng.uniform(-1, 1, (b, 2 * NUM_LANDMARKS)).astype(np.float32),
            "y_t": rng.integers(0, k, b).astype(np.int32),
        }
    if "pair" in features:
        extra |= {"x_pair": noise(c), "pair_valid": np.ones(b, np.float32)}
    if "own_neutral" in features:
        extra |= {"x_own_neutral": noise(c), "own_neutral_valid": np.ones(b, np.float32)}
    return extra | {
        "x": rng.uniform(-1, 1, (b, s, s, c)).astype(np.float32),
        "x_pr": rng.uniform(-1, 1, (b, s, s, c)).astype(np.float32),
        "y": y,
        "y_target": ((y + rng.integers(1, k, b)) % k).astype(np.int32),
    }
