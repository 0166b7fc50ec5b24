"""Subprocess for test_distributed: start jax.distributed from flags or environment, then print
one JSON line with what JAX sees."""

import json

from absl import app

from fergan.launch import distributed

distributed.define_flags()
distributed.define_flags()  # A second call must be harmless.


def main(argv):
    del argv
    source = distributed.initialize_from_flags()
    import jax

    print(
        json.dumps(
            {
                "source": source,
                "initialized": jax.distributed.is_initialized(),
                "process_index": jax.process_index(),
                "process_count": jax.process_count(),
                "device_count": jax.device_count(),
            }
        ),
        flush=True,
    )
    if jax.distributed.is_initialized():
        jax.distributed.shutdown()


if __name__ == "__main__":
    app.run(main)
