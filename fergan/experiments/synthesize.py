"""`--mode synthesize`: re-render face images with every expression, or one at given intensities,
with any method's editor."""

import os

import numpy as np
from absl import logging

from fergan.data import align, preprocess
from fergan.evaluation import figures
from fergan.types import Editor


def input_files(path: str) -> list[str]:
    """`path` itself when it is a file, else the images directly inside the folder."""
    if os.path.isfile(path):
        return [path]
    if os.path.isdir(path):
        files = [os.path.join(path, n) for n in preprocess.list_images(path)]
        if not files:
            raise FileNotFoundError(f"--input={path} is a folder with no images.")
        return files
    raise FileNotFoundError(f"--input={path} does not exist.")


def load_face(
    path: str, size: int, channels: int, aligner: align.Aligner
) -> tuple[np.ndarray, np.ndarray]:
    """One image file -> ([size, size, c] float32 in [-1, 1], aligned as the training data was,
    its landmarks [68, 2] in output pixels, NaN without a detector); DataError names a bad
    file."""
    image = preprocess.decode_image(path)
    [(face, landmarks)] = align.align_sequence(aligner, [image], [""], size)
    return preprocess.to_float(preprocess.to_channels(face, channels)), landmarks


def class_index(expression: str, class_names) -> int:
    """A class given by name or index -> its index; ValueError lists the allowed names."""
    if expression.isdigit() and int(expression) < len(class_names):
        return int(expression)
    if expression in class_names:
        return list(class_names).index(expression)
    raise ValueError(f"--expression={expression!r} is unknown; allowed: {', '.join(class_names)}")


def render_faces(
    editor: Editor,
    face: np.ndarray,
    num_classes: int,
    expression: int | None,
    intensities,
    landmarks: np.ndarray | None = None,
) -> np.ndarray:
    """One face [S, S, c] (landmarks [68, 2]) rendered with every class at apex ->
    [1, K, S, S, c], or with class `expression` at each intensity -> [1, A, S, S, c]."""
    if expression is None:
        labels = np.arange(num_classes, dtype=np.int32)
        amounts = np.ones(num_classes, np.float32)
    else:
        amounts = np.asarray(intensities, np.float32)
        labels = np.full(len(amounts), expression, np.int32)
    n = len(labels)
    marks = None if landmarks is None else np.repeat(np.asarray(landmarks)[None], n, axis=0)
    return editor(np.repeat(face[None], n, axis=0), labels, amounts, landmarks=marks)[None]


def _write_one(
    editor: Editor, face, landmarks, stem: str, class_names, output: str, expression, intensities
) -> list[str]:
    """The overview grid and one PNG per rendered face of one input; returns the paths."""
    k = len(class_names)
    out = render_faces(editor, face, k, expression, intensities, landmarks)
    if expression is None:
        tiles = {class_names[c]: out[0, c] for c in range(k)}
        grid_path = os.path.join(output, f"{stem}_expressions.png")
        figures.plot_expression_grid(grid_path, face[None], out, class_names)
    else:
        name = class_names[expression]
        tiles = {f"{name}_{a:g}": out[0, i] for i, a in enumerate(intensities)}
        grid_path = os.path.join(output, f"{stem}_{name}_sweep.png")
        figures.plot_intensity_sweep(grid_path, out, [name], intensities)
    written = [grid_path]
    for tile, image in tiles.items():
        written.append(os.path.join(output, f"{stem}_{tile}.png"))
        figures.save_png(written[-1], figures.to_uint8(image))
    return written


def synthesize_files(
    editor: Editor,
    image_size: int,
    channels: int,
    class_names,
    files: list[str],
    output: str,
    aligner: align.Aligner | None = None,
    expression: str | None = None,
    intensities=(1.0,),
) -> list[str]:
    """Write, per input file, one PNG per rendered face plus an overview grid; returns paths.

    Every file is read before anything is written, so a bad file stops the run with nothing
    half-done.
    """
    aligner = aligner or align.Aligner(mode="none", source="")
    logging.info("%s", aligner.describe())
    loaded = [load_face(f, image_size, channels, aligner) for f in files]
    target = None if expression is None else class_index(expression, class_names)
    os.makedirs(output, exist_ok=True)
    written = []
    for path, (face, landmarks) in zip(files, loaded, strict=True):
        stem = os.path.splitext(os.path.basename(path))[0]
        written += _write_one(
            editor, face, landmarks, stem, class_names, output, target, intensities
        )
    logging.info("Wrote %d images to %s", len(written), output)
    return written
