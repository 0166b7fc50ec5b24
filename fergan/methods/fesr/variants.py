"""The method's variants (SPEC "Variants") as static switches read by the one training step.

Synthesis ablations (Fig. 4) change G's objective; recognition ablations (Fig. 8, Table V) change
how R learns. Every switch is a Python bool fixed at trace time, so a variant costs no runtime
branching and skips the work it does not need.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Variant:
    """Switches of one variant; the defaults are the full method (FESR_JL with FG)."""

    use_rec: bool = True  # L_rec (Eq. 10).
    use_id: bool = True  # L_id (Eq. 12).
    use_dimg: bool = True  # Dimg and its losses (Eqs. 4-5, 8-9).
    use_dimg_cls: bool = True  # Dimg's classification head (Eqs. 8-9).
    use_dz: bool = True  # Dz and its losses (Eqs. 6-7).
    use_gan: bool = True  # Train FESGAN at all (False: BASELINE).
    joint: bool = True  # Stage 2 keeps training G, with R's loss on x_pf (Eq. 25).
    pretrain: bool = True  # Stage 1 of P_pre iterations before joint learning.
    use_synthetic: bool = True  # R also learns from x_pf (Eqs. 13, 20-21).
    use_intra: bool = True  # L_intra (Eqs. 14-18).
    rdbp: bool = True  # stop_gradient on the real feature in the real/synthetic distance (Eq. 18).
    synthetic_from_real: bool = False  # x_pf = g(x) rendered with every expression (FESR_Real).

    def __post_init__(self):
        # FESR_Real's K synthetic faces per sample have no one-to-one real partner for L_intra,
        # and the paper's FESR_Real is FESR_JL-IL with only the generation changed (Sec. IV-D).
        if self.synthetic_from_real and self.use_intra:
            raise ValueError("synthetic_from_real (FESR_Real) excludes use_intra (L_intra)")

    @property
    def trains_r_only(self) -> bool:
        return not self.use_gan


VARIANTS: dict[str, Variant] = {
    # Synthesis ablations (Fig. 4).
    "FG": Variant(),
    "FG-CO": Variant(use_rec=False, use_id=False),
    "FG-IP": Variant(use_id=False),
    "FG-Dimg": Variant(use_dimg=False, use_dimg_cls=False),
    "FG-Dimg_cls": Variant(use_dimg_cls=False),
    "FG-Dz": Variant(use_dz=False),
    # Recognition ablations (Fig. 8, Table V).
    "BASELINE": Variant(use_gan=False, pretrain=False, use_synthetic=False, use_intra=False),
    "FESR_SL": Variant(joint=False),
    "FESR_OneSt": Variant(pretrain=False),
    "FESR_JL-IL": Variant(use_intra=False),
    "FESR_JL-RDBP": Variant(rdbp=False),
    # Section IV-D: FESR_JL-IL whose x_pf are the input itself rendered with every expression.
    "FESR_Real": Variant(use_intra=False, synthetic_from_real=True),
    "FESR_JL": Variant(),
}


def get_variant(name: str) -> Variant:
    """The switches of variant `name`; a clear error lists the allowed names."""
    if name not in VARIANTS:
        raise ValueError(f"variant={name!r} is unknown; allowed: {', '.join(VARIANTS)}")
    return VARIANTS[name]
