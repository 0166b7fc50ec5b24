"""How hard is synthetic_faces? `python -m fergan.data.separability [--out docs/figures]`.

Trains a plain pixel classifier (standardised pixels -> multinomial logistic regression) on the
labelled frames of a few subjects and reports accuracy on the peak frames of held-out subjects,
for growing numbers of training subjects. Also writes a grid of sample faces. Prints a Markdown
table and writes `synthetic_separability.png` and `synthetic_samples.png` to --out.
"""

from __future__ import annotations

import os

import numpy as np
from absl import app, flags

from fergan.data import face_renderer

_OUT = flags.DEFINE_string("out", "docs/figures", "Folder for the PNG figures.")
_SIZE = flags.DEFINE_integer("size", 32, "Image size.")
_SEED = flags.DEFINE_integer("seed", 0, "Render seed.")
_TEST_SUBJECTS = flags.DEFINE_integer("test_subjects", 30, "Held-out subjects.")
_TRAIN = flags.DEFINE_list("train_subjects", ["5", "10", "20", "40"], "Training subject counts.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Random draws of the training subjects per count.")


def _render(seed: int, num_subjects: int, size: int) -> dict[str, np.ndarray]:
    frames = list(face_renderer.generate(seed, num_subjects, size))
    return {
        "x": np.stack([f.image for f in frames]).reshape(len(frames), -1).astype(np.float32) / 255,
        "y": np.array([f.label for f in frames]),
        "subject": np.array([f.subject for f in frames]),
        "peak": np.array([f.is_peak for f in frames]),
    }


def pixel_probe(x: np.ndarray, y: np.ndarray):
    """Fits standardised pixels -> multinomial logistic regression.

    Args:
      x: [N, D] flattened images (any fixed scaling); y: [N] labels.

    Returns:
      The fitted scikit-learn pipeline (`predict` takes [M, D]).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=300)).fit(x, y)


def held_out_accuracy(
    train_counts: list[int], test_subjects: int, size: int, seed: int, repeats: int
) -> dict[int, tuple[float, float]]:
    """Mean and std (over `repeats` subject draws) of held-out-subject peak-frame accuracy.

    Returns:
      {number of training subjects: (mean accuracy, std)}.
    """
    pool = max(train_counts)
    data = _render(seed, pool + test_subjects, size)
    test = (data["subject"] > pool) & data["peak"]
    results = {}
    for n in train_counts:
        accs = []
        for r in range(repeats):
            chosen = np.random.default_rng([seed, n, r]).choice(pool, n, replace=False) + 1
            train = np.isin(data["subject"], chosen)
            clf = pixel_probe(data["x"][train], data["y"][train])
            accs.append(float((clf.predict(data["x"][test]) == data["y"][test]).mean()))
        results[n] = (float(np.mean(accs)), float(np.std(accs)))
    return results


def sample_grid(seed: int = 0, subjects: int = 6, size: int = 96, steps: int = 8) -> np.ndarray:
    """Rows: subjects; columns: neutral then the 7 apex expressions. Last row: one subject's
    happiness sequence from neutral to apex (with the dataset's nuisance).

    Returns:
      float32 [(subjects + 1) * size, 8 * size] in [0, 1].
    """
    rows = []
    for s in range(subjects):
        idt = face_renderer.sample_identity(np.random.default_rng([seed, 0, s]))
        rng = np.random.default_rng([seed, 3, s])
        # Same nuisance scale as the dataset default (config.data.synthetic_nuisance).
        cells = [
            face_renderer.render_face(idt, k, a, size, rng, face_renderer.sample_nuisance(rng, 0.2))
            for k, a in [(None, 0.0)] + [(k, 1.0) for k in range(7)]
        ]
        rows.append(np.concatenate(cells, 1))
    idt = face_renderer.sample_identity(np.random.default_rng([seed, 0, 0]))
    ramp = np.linspace(0.0, 1.0, steps)
    rows.append(
        np.concatenate([face_renderer.render_face(idt, "happiness", a, size) for a in ramp], 1)
    )
    return np.concatenate(rows, 0)


def main(argv):
    del argv
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(_OUT.value, exist_ok=True)
    counts = [int(c) for c in _TRAIN.value]
    res = held_out_accuracy(counts, _TEST_SUBJECTS.value, _SIZE.value, _SEED.value, _REPEATS.value)
    print(f"Held-out-subject peak-frame accuracy, {_SIZE.value}px, chance 14.3%:")
    print("| training subjects | accuracy (mean ± std) |\n|---|---|")
    for n, (m, s) in res.items():
        print(f"| {n} | {100 * m:.1f} ± {100 * s:.1f} % |")

    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    means = [100 * res[n][0] for n in counts]
    stds = [100 * res[n][1] for n in counts]
    ax.errorbar(counts, means, yerr=stds, marker="o", capsize=3)
    ax.axhline(100 / 7, ls="--", c="gray", label="chance")
    ax.set_xscale("log")
    ax.set_xticks(counts, [str(c) for c in counts])
    ax.minorticks_off()
    ax.set_ylim(0, 100)
    ax.set_xlabel("training subjects")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title("synthetic_faces: pixel logistic regression")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(_OUT.value, "synthetic_separability.png"), dpi=120)

    grid = sample_grid(_SEED.value)
    plt.imsave(os.path.join(_OUT.value, "synthetic_samples.png"), grid, cmap="gray", vmin=0, vmax=1)


if __name__ == "__main__":
    app.run(main)
