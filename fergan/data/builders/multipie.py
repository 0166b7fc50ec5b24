"""CMU Multi-PIE: 6 expressions at 5 yaw angles (the multi-pose protocol of method geometry).

Expressions follow from the (session, recording) pair, as the database documents them; the five
cameras between -30 and +30 degrees and their angles are those the geometry paper's authors used
in their earlier code (the paper does not list them). One illumination per image set (the
decision: flash 07, near-frontal light) so a (subject, session, recording, camera) gives one face.
"""

from __future__ import annotations

import os
import re

from fergan.data.builders import base
from fergan.data.preprocess import DataError

# The paper's labels NE, DI, SU, SM, SC, SQ, in alphabetical order (configs/multipie.py).
CLASS_NAMES = ("disgust", "neutral", "scream", "smile", "squint", "surprise")
# (session, recording) -> expression.
EXPRESSION_OF_RECORDING = {
    (1, 1): "neutral",
    (1, 2): "smile",
    (2, 1): "neutral",
    (2, 2): "surprise",
    (2, 3): "squint",
    (3, 1): "neutral",
    (3, 2): "smile",
    (3, 3): "disgust",
    (4, 1): "neutral",
    (4, 2): "neutral",
    (4, 3): "scream",
}
# Camera folder -> yaw in degrees.
CAMERA_YAW = {"13_0": -30, "14_0": -15, "05_1": 0, "05_0": 15, "04_1": 30}
ILLUMINATION = 7

LAYOUT = """\
Expected layout (the release's data folder as the database's documentation describes it; no
copy of the release could be checked here, so tell us if yours differs):
  <manual_dir>/session01/multiview/001/01/05_1/001_01_01_051_07.png
  <manual_dir>/session<SS>/multiview/<subject>/<recording>/<camera>/
      <subject>_<SS>_<recording>_<camera without '_'>_<illumination>.png
Read: sessions 01-04; recordings by session (01: neutral, smile; 02: neutral, surprise,
squint; 03: neutral, smile, disgust; 04: neutral, neutral, scream); cameras 13_0 (-30 deg),
14_0 (-15), 05_1 (0), 05_0 (+15), 04_1 (+30); illumination 07 only. Other cameras,
illuminations and files are ignored. Subject ids come from the <subject> folders, which are
the same across sessions, so folds stay subject-independent."""

_SESSION = re.compile(r"^session0?(\d)$")
_NUMBER = re.compile(r"^\d+$")


def _recordings(root: str):
    """(session, subject, recording, folder, expression) of every recording folder under
    `root`; DataError for a recording the session does not have."""
    sessions = sorted(
        (int(m.group(1)), os.path.join(root, name, "multiview"))
        for name in os.listdir(root)
        if (m := _SESSION.match(name)) and os.path.isdir(os.path.join(root, name, "multiview"))
    )
    if not sessions:
        raise FileNotFoundError(f"No session0<N>/multiview folders in {root!r}; {base.SEE_LAYOUT}.")
    for session, views in sessions:
        for subject in sorted(filter(_NUMBER.match, os.listdir(views))):
            for recording in sorted(
                filter(_NUMBER.match, os.listdir(os.path.join(views, subject)))
            ):
                folder = os.path.join(views, subject, recording)
                expression = EXPRESSION_OF_RECORDING.get((session, int(recording)))
                if expression is None:
                    raise DataError(
                        f"{folder!r}: session {session} has no recording {int(recording)}; "
                        f"{base.SEE_LAYOUT}."
                    )
                yield session, subject, recording, folder, expression


def _camera_records(session, subject, recording, folder, expression) -> list[base.Record]:
    """One record per camera of CAMERA_YAW whose illumination-07 image the recording has (not
    every subject attended every camera's capture)."""
    sid, label = int(subject), CLASS_NAMES.index(expression)
    first_sequence = ((sid * 10 + session) * 10 + int(recording)) * 10
    records = []
    for index, (camera, yaw) in enumerate(CAMERA_YAW.items()):
        name = f"{subject}_{session:02d}_{recording}_{camera.replace('_', '')}_{ILLUMINATION:02d}"
        path = os.path.join(folder, camera, f"{name}.png")
        if os.path.isfile(path):
            sequence = first_sequence + index
            records.append(base.Record(path, label, sid, sequence, 0, True, pose=yaw))
    return records


class MultiPie(base.FaceFolderBuilder):
    """Multi-PIE: 6 expressions x 5 poses, single images (each its own peak frame)."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = LAYOUT

    @staticmethod
    def without_sequences(data) -> str:
        return "multipie holds single images (its neutral faces are the class 'neutral')"

    @staticmethod
    def records(config: base.FaceConfig, root: str) -> list[base.Record]:
        """Single images, each its own peak frame (frame 0)."""
        return [r for found in _recordings(root) for r in _camera_records(*found)]
