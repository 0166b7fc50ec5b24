"""The built-in procedural face set: no files, generated from the config seed."""

from __future__ import annotations

import tensorflow_datasets as tfds

from fergan import console
from fergan.data import face_renderer, preprocess
from fergan.data.builders import base


class SyntheticFaces(base.QuietBuilder):
    """CK+-shaped sequences of rendered faces (see fergan.data.face_renderer)."""

    VERSION = tfds.core.Version(base.DATASET_VERSION)
    RELEASE_NOTES = base.DATASET_RELEASE_NOTES
    BUILDER_CONFIGS = ()

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(features=base.features(self.builder_config))

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download or read.
        base.check_config(self.builder_config)
        return {base.SPLIT: self._generate_examples()}

    def _generate_examples(self):
        cfg = self.builder_config
        frames = face_renderer.generate(
            seed=cfg.option("seed"),
            num_subjects=cfg.option("num_subjects"),
            size=cfg.image_size,
            frames_per_sequence=cfg.option("frames_per_sequence"),
            label_last_frames=cfg.label_last_frames,
            nuisance=cfg.option("nuisance"),
            style=cfg.option("style"),
            neutral_first_frames=bool(cfg.option("neutral_first_frames", False)),
            poses=tuple(cfg.option("poses", ())),
        )
        per_sequence = cfg.label_last_frames + bool(cfg.option("neutral_first_frames", False))
        sequences = len(face_renderer.EXPRESSIONS) * max(len(cfg.option("poses", ())), 1)
        total = cfg.option("num_subjects") * sequences * per_sequence
        for fr in console.track(frames, "dataset", total, unit="frame"):
            image = preprocess.to_channels(fr.image, cfg.channels)
            yield (
                base.example_key(fr.sequence, fr.frame, fr.neutral),
                {
                    "image": preprocess.encode_png(image),
                    "label": fr.label,
                    "subject": fr.subject,
                    "sequence": fr.sequence,
                    "frame": fr.frame,
                    "is_peak": fr.is_peak,
                    # Rendered at the output size: the analytic points are already in its pixels.
                    "landmarks": fr.landmarks,
                    "mask": base.mask_image(fr.mask),
                    "neutral": fr.neutral,
                    "pose": fr.pose,
                },
            )
