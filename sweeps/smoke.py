"""Two short runs (BASELINE, seeds 0 and 1): checks a launcher end to end in about a minute.

Pair it with flags that shrink the config (see docs/launch.md, "Local runs").
"""


def get_sweep():
    return [{"variant": "BASELINE", "seed": seed} for seed in (0, 1)]
