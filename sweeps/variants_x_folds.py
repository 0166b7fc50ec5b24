"""The recognition ablations (Fig. 8, Table V) on 5 folds: 4 variants x 5 folds = 20 runs.

Use with a config whose data.num_folds is at least 5, e.g.
  python -m fergan.launch.local --config configs/ck_plus.py --sweep sweeps/variants_x_folds.py \
      --workdir runs/ck_plus_ablations
"""

VARIANTS = ("BASELINE", "FESR_JL-IL", "FESR_JL-RDBP", "FESR_JL")
FOLDS = range(5)


def get_sweep():
    return [{"variant": variant, "data.fold": fold} for variant in VARIANTS for fold in FOLDS]
