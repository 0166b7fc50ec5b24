"""Input pipeline throughput:
`python -m fergan.benchmarks.input_pipeline --config configs/<name>.py`.

Prints one JSON line: batches_per_s, images_per_s, image_size, batch (global batch, one process).
"""

from __future__ import annotations

import json
import os
import tempfile
import time

from absl import app, flags
from ml_collections import config_flags

from fergan.data import pipeline

_CONFIG = config_flags.DEFINE_config_file("config", None, "fergan config file.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "TFDS data dir ('' = config.data.data_dir or tmp).")
_STEPS = flags.DEFINE_integer("steps", 200, "Batches timed after warm-up.")
_WARMUP = flags.DEFINE_integer("warmup", 20, "Batches drawn before timing.")


def main(argv):
    del argv
    config = _CONFIG.value
    data_dir = _DATA_DIR.value or config.data.data_dir
    data_dir = data_dir or os.path.join(tempfile.gettempdir(), "fergan_tfds")
    datasets = pipeline.build_datasets(config, data_dir)
    it = pipeline.make_train_iterator(config, datasets)
    for _ in range(_WARMUP.value):
        next(it)
    start = time.perf_counter()
    for _ in range(_STEPS.value):
        next(it)
    elapsed = time.perf_counter() - start
    batch = config.train.batch_size
    print(
        json.dumps(
            {
                "batches_per_s": round(_STEPS.value / elapsed, 2),
                "images_per_s": round(_STEPS.value * batch / elapsed, 1),
                "image_size": config.model.image_size,
                "batch": batch,
            }
        )
    )


if __name__ == "__main__":
    app.run(main)
