"""CK+ (Extended Cohn-Kanade) from its official release folders."""

from __future__ import annotations

import os
import re

from fergan.data.builders import base
from fergan.data.preprocess import DataError, list_images

CLASS_NAMES = ("anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise")

LAYOUT = """\
Expected layout of the CK+ release (unpack extended-cohn-kanade-images.zip and Emotion_labels.zip
into one folder, the manual dir):
  <manual_dir>/cohn-kanade-images/S005/001/S005_001_00000001.png ... (every frame of a sequence)
  <manual_dir>/Emotion/S005/001/S005_001_00000011_emotion.txt       (one number, e.g. 3.0000000e+00)
  <manual_dir>/Landmarks/S005/001/S005_001_00000011_landmarks.txt   (optional: 68 lines 'x y')
Emotion codes: 0=neutral 1=anger 2=contempt 3=disgust 4=fear 5=happy 6=sadness 7=surprise. Only
sequences with an emotion file are used; the last `label_last_frames` frames carry its label, and
with data.neutral_first_frames its first frame is a neutral face too.
When Landmarks/ is there (Landmarks.zip), every used frame needs its file; faces are then aligned
on those points."""

_DIR = re.compile(r"^S(\d+)$")
_SEQ = re.compile(r"^(\d+)$")
_FRAME = re.compile(r"_(\d+)\.[A-Za-z]+$")


def parse_emotion(path: str) -> int:
    """Reads a CK+ emotion file; returns the class index 0..6 (code 1..7 minus one)."""
    with open(path) as f:
        text = f.read().strip()
    try:
        value = float(text)
    except ValueError as e:
        raise DataError(f"Emotion file {path!r} holds {text!r}, not a number.") from e
    if value != int(value) or not 1 <= value <= 7:
        raise DataError(
            f"Emotion file {path!r} holds label {text!r}; expected an integer code in 1..7 "
            "(1=anger ... 7=surprise)."
        )
    return int(value) - 1


def frame_number(position: int, name: str) -> int:
    """A frame's number from its file name (S005_001_00000011.png -> 11), else its position."""
    m = _FRAME.search(name)
    return int(m.group(1)) if m else position


def landmark_file(landmarks_dir: str, subj: str, seq: str, image_name: str) -> str:
    """Path of the landmark file of one frame, which must exist (checked before any writing)."""
    stem = os.path.splitext(image_name)[0]
    path = os.path.join(landmarks_dir, subj, seq, f"{stem}_landmarks.txt")
    if not os.path.isfile(path):
        raise DataError(
            f"Landmarks/ is present but the frame's landmark file {path!r} is missing; restore it "
            f"or remove Landmarks/ to detect landmarks instead ({base.SEE_LAYOUT})."
        )
    return path


class CkPlus(base.FaceFolderBuilder):
    """CK+: 7 expressions, the last frames of each labelled sequence, peak frame for testing."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = LAYOUT

    @staticmethod
    def records(config: base.FaceConfig, root: str) -> list[base.Record]:
        images, emotion = os.path.join(root, "cohn-kanade-images"), os.path.join(root, "Emotion")
        for d in (images, emotion):
            if not os.path.isdir(d):
                raise FileNotFoundError(f"Missing folder {d!r}; {base.SEE_LAYOUT}.")
        k = config.label_last_frames
        landmarks = os.path.join(root, "Landmarks")
        has_landmarks = os.path.isdir(landmarks)
        records = []
        for subj in sorted(os.listdir(emotion)):
            m = _DIR.match(subj)
            if not m:
                continue
            subject = int(m.group(1))
            for seq in sorted(os.listdir(os.path.join(emotion, subj))):
                if not _SEQ.match(seq):
                    continue
                label_dir = os.path.join(emotion, subj, seq)
                files = [n for n in sorted(os.listdir(label_dir)) if n.endswith("_emotion.txt")]
                if not files:
                    continue  # Unlabelled sequence, as in the release.
                label = parse_emotion(os.path.join(label_dir, files[-1]))
                frame_dir = os.path.join(images, subj, seq)
                if not os.path.isdir(frame_dir):
                    raise FileNotFoundError(
                        f"Emotion file {os.path.join(label_dir, files[-1])!r} has no image folder "
                        f"{frame_dir!r}; {base.SEE_LAYOUT}."
                    )
                names = list_images(frame_dir)
                if not names:
                    raise DataError(f"Sequence folder {frame_dir!r} holds no images.")
                sequence = subject * 1000 + int(seq)
                used = [name for _, name in base.last_frames(names, k)]
                if config.option("neutral_first_frames"):
                    used.append(sorted(names)[0])
                # Only the frames used need a landmark file.
                lm_paths = {
                    name: landmark_file(landmarks, subj, seq, name) if has_landmarks else ""
                    for name in used
                }
                chosen = [
                    base.Record(
                        path=os.path.join(frame_dir, name),
                        label=label,
                        subject=subject,
                        sequence=sequence,
                        frame=frame_number(pos, name),
                        is_peak=pos == len(names) - 1,
                        landmarks_path=lm_paths[name],
                    )
                    for pos, name in base.last_frames(names, k)
                ]
                if config.option("neutral_first_frames"):
                    first = sorted(names)[0]
                    path = os.path.join(frame_dir, first)
                    records += base.first_frame_record(
                        chosen, frame_number(0, first), path, lm_paths[first]
                    )
                records += chosen
        return records
