"""The demo's documented departures: `configs/demo.py` is `configs/demo_paper.py` with exactly
the keys of `demo.DEPARTURES` changed, and for FESR only."""

import pytest

from configs import demo, demo_paper


def _flat(config) -> dict:
    return {
        f"{section}.{key}": value
        for section, group in config.items()
        if hasattr(group, "items")
        for key, value in group.items()
    } | {k: v for k, v in config.items() if not hasattr(v, "items")}


@pytest.mark.parametrize("variant", [None, "BASELINE", "FESR_JL-IL"])
def test_the_demo_is_the_paper_recipe_with_the_departures_only(variant):
    ours, paper = _flat(demo.get_config(variant)), _flat(demo_paper.get_config(variant))
    differing = {k for k in ours if ours[k] != paper[k]}
    assert differing == set(demo.DEPARTURES) | {"name"}
    for key, (paper_value, demo_value) in demo.DEPARTURES.items():
        assert (paper[key], ours[key]) == (paper_value, demo_value)


def test_another_method_keeps_its_own_settings():
    ours, paper = _flat(demo.get_config("ECGAN")), _flat(demo_paper.get_config("ECGAN"))
    assert {k for k in ours if ours[k] != paper[k]} == {"name"}
    assert ours["data.flip"] and ours["data.neutral_first_frames"]
