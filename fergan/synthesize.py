"""`--mode synthesize`: re-render face images with every expression, or one at given intensities."""

import os

import numpy as np
from absl import logging

from fergan.data import align, preprocess
from fergan.evaluation import figures, synthesis
from fergan.training.networks import Networks
from fergan.training.state import TrainState


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


def load_face(path: str, size: int, channels: int, aligner: align.Aligner) -> np.ndarray:
    """One image file -> [size, size, c] float32 in [-1, 1], aligned as the training data was;
    DataError names a bad file."""
    image = preprocess.decode_image(path)
    [(face, _)] = align.align_sequence(aligner, [image], [""], size)
    return preprocess.to_float(preprocess.to_channels(face, channels))


def class_index(expression: str, class_names) -> int:
    """A class given by name or index -> its index; ValueError lists the allowed names."""
    if expression.isdigit() and int(expression) < len(class_names):
        return int(expression)
    if expression in class_names:
        return list(class_names).index(expression)
    raise ValueError(f"--expression={expression!r} is unknown; allowed: {', '.join(class_names)}")


def synthesize_files(
    nets: Networks,
    state: TrainState,
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
    faces = np.stack([load_face(f, nets.image_size, nets.channels, aligner) for f in files])
    os.makedirs(output, exist_ok=True)
    k = nets.num_classes
    written = []
    for path, face in zip(files, faces, strict=True):
        stem = os.path.splitext(os.path.basename(path))[0]
        if expression is None:
            out = np.asarray(
                synthesis.render_expressions(
                    nets.generator,
                    state.g.params,
                    face[None],
                    k,
                    off_value=nets.inference_off_value,
                )
            )
            tiles = {class_names[c]: out[0, c] for c in range(k)}
            grid_path = os.path.join(output, f"{stem}_expressions.png")
            figures.plot_expression_grid(grid_path, face[None], out, class_names)
        else:
            c = class_index(expression, class_names)
            sweep = np.asarray(
                synthesis.intensity_sweep(
                    nets.generator,
                    state.g.params,
                    face[None],
                    k,
                    np.asarray(intensities, np.float32),
                    off_value=nets.inference_off_value,
                )
            )
            tiles = {f"{class_names[c]}_{a:g}": sweep[c, i] for i, a in enumerate(intensities)}
            grid_path = os.path.join(output, f"{stem}_{class_names[c]}_sweep.png")
            figures.plot_intensity_sweep(
                grid_path, sweep[c : c + 1], class_names[c : c + 1], intensities
            )
        written.append(grid_path)
        for name, image in tiles.items():
            target = os.path.join(output, f"{stem}_{name}.png")
            figures.save_png(target, figures.to_uint8(image))
            written.append(target)
    logging.info("Wrote %d images to %s", len(written), output)
    return written
