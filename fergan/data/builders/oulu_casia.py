"""Oulu-CASIA NIR&VIS expression sequences, one lighting/camera subset at a time."""

from __future__ import annotations

import os
import re

from fergan.data.builders import base
from fergan.data.preprocess import DataError, list_images

CLASS_NAMES = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
_FOLDERS = ("Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise")

LAYOUT = """\
Expected layout: one subset of the Oulu-CASIA release's OriginalImg (or Preprocess) tree, e.g. the
visible-light, strong-illumination folder OriginalImg/VL/Strong, given as the manual dir:
  <manual_dir>/P001/Anger/000.jpeg 001.jpeg ... (one neutral-to-apex sequence per folder)
  <manual_dir>/P001/{Anger,Disgust,Fear,Happiness,Sadness,Surprise}/...
  <manual_dir>/P002/...
Subject ids come from the P### folder names; the last `label_last_frames` frames of each sequence
carry its label and the last one is the peak; with data.neutral_first_frames the first frame is a
neutral face too."""

_SUBJECT = re.compile(r"^P(\d+)$")


class OuluCasia(base.FaceFolderBuilder):
    """Oulu-CASIA: 6 expressions, 80 subjects, one sequence per subject and expression."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = LAYOUT

    @staticmethod
    def records(config: base.FaceConfig, root: str) -> list[base.Record]:
        k = config.label_last_frames
        subjects = [s for s in sorted(os.listdir(root)) if _SUBJECT.match(s)]
        if not subjects:
            raise FileNotFoundError(f"No P### subject folders in {root!r}; {base.SEE_LAYOUT}.")
        records = []
        for subj in subjects:
            subject = int(_SUBJECT.match(subj).group(1))
            for label, folder in enumerate(_FOLDERS):
                seq_dir = os.path.join(root, subj, folder)
                if not os.path.isdir(seq_dir):
                    continue  # A few subjects lack some expressions.
                names = list_images(seq_dir)
                if not names:
                    raise DataError(f"Sequence folder {seq_dir!r} holds no images.")
                chosen = [
                    base.Record(
                        path=os.path.join(seq_dir, name),
                        label=label,
                        subject=subject,
                        sequence=subject * 10 + label,
                        frame=pos,
                        is_peak=pos == len(names) - 1,
                    )
                    for pos, name in base.last_frames(names, k)
                ]
                if config.option("neutral_first_frames"):
                    path = os.path.join(seq_dir, sorted(names)[0])
                    records += base.first_frame_record(chosen, 0, path)
                records += chosen
        return records
