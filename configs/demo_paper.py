"""The demo with the paper's recipe: `configs/demo.py` without its departures (one G width,
no paired synthesis, R on the frozen identity trunk). docs/results.md shows the two side by
side; the program tests train tiny versions of this config."""

from configs import demo


def get_config(variant: str | None = None):
    config = demo.get_config(variant)
    config.name = "demo_paper"
    return demo.with_recipe(config, demo.DEPARTURES, paper=True)
