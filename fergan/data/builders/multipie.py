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


def _image_name(subject: str, session: int, recording: str, camera: str) -> str:
    return f"{subject}_{session:02d}_{recording}_{camera.replace('_', '')}_{ILLUMINATION:02d}.png"


class MultiPie(base.FaceFolderBuilder):
    """Multi-PIE: 6 expressions x 5 poses, single images (each its own peak frame)."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = LAYOUT

    @staticmethod
    def records(config: base.FaceConfig, root: str) -> list[base.Record]:
        sessions = sorted(
            (int(m.group(1)), name)
            for name in os.listdir(root)
            if (m := _SESSION.match(name)) and os.path.isdir(os.path.join(root, name, "multiview"))
        )
        if not sessions:
            raise FileNotFoundError(
                f"No session0<N>/multiview folders in {root!r}; {base.SEE_LAYOUT}."
            )
        records = []
        for session, folder in sessions:
            views = os.path.join(root, folder, "multiview")
            for subject in sorted(filter(_NUMBER.match, os.listdir(views))):
                for recording in sorted(
                    filter(_NUMBER.match, os.listdir(os.path.join(views, subject)))
                ):
                    expression = EXPRESSION_OF_RECORDING.get((session, int(recording)))
                    if expression is None:
                        raise DataError(
                            f"{os.path.join(views, subject, recording)!r}: session {session} has "
                            f"no recording {int(recording)}; {base.SEE_LAYOUT}."
                        )
                    for cam_index, (camera, yaw) in enumerate(CAMERA_YAW.items()):
                        path = os.path.join(
                            views,
                            subject,
                            recording,
                            camera,
                            _image_name(subject, session, recording, camera),
                        )
                        if not os.path.isfile(path):
                            continue  # Not every subject attended every camera's capture.
                        sid = int(subject)
                        records.append(
                            base.Record(
                                path=path,
                                label=CLASS_NAMES.index(expression),
                                subject=sid,
                                sequence=((sid * 10 + session) * 10 + int(recording)) * 10
                                + cam_index,
                                frame=0,
                                is_peak=True,
                                pose=yaw,
                            )
                        )
        return records
