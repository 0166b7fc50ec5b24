"""Test-wide set-up: 4 simulated CPU devices, so data-parallel paths run without accelerators."""

import os
import sys
import tempfile

import jax
import pytest

# Must happen before the CPU backend starts; every test sees the same 4 devices.
jax.config.update("jax_num_cpu_devices", 4)
# Tests that build the same program (same variant, sizes and step) compile it once per run.
jax.config.update(
    "jax_compilation_cache_dir", os.path.join(tempfile.gettempdir(), "fergan-jax-cache")
)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """One TFDS data dir per test module (the program tests build their tiny set once)."""
    return str(tmp_path_factory.mktemp("tfds"))
