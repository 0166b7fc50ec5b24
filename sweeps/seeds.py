"""One config under 4 seeds (0..3): the run-to-run spread of every metric."""


def get_sweep():
    return [{"seed": seed} for seed in range(4)]
