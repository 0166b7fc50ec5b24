"""Generic `<root>/<class_name>/<file>` databases with subject (and sequence) ids in file names."""

from __future__ import annotations

import os
import re
from collections import defaultdict

from fergan.data.builders import base
from fergan.data.preprocess import DataError, list_images

LAYOUT = """\
Expected layout: one folder per expression class, images inside:
  <manual_dir>/<class_name>/<file>   e.g. <manual_dir>/happiness/S010_004_00000017.png
Class names are the folder names (sorted) unless data.class_names lists them. data.subject_regex
extracts the subject id from the file name (group 'subject' or the first group, e.g. '^S(\\d+)_').
Optionally data.sequence_regex extracts groups 'sequence' and 'frame' (e.g.
'^S\\d+_(?P<sequence>\\d+)_(?P<frame>\\d+)'): then only the last `label_last_frames` frames of each
sequence are labelled and the last is the peak; without it every image is its own peak frame."""


def _group(m: re.Match, name: str) -> str:
    return m.group(name) if name in m.re.groupindex else m.group(1)


def _compile(key: str, pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as e:  # Not a ValueError: would escape the one-line error report.
        raise ValueError(f"{key}={pattern!r} is not a valid regular expression: {e}") from e


def folder_class_names(root: str) -> tuple[str, ...]:
    """Class names from the sub-folders of `root`, sorted."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"Manual dir {root!r} does not exist; {base.SEE_LAYOUT}.")
    names = tuple(sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))))
    if not names:
        raise FileNotFoundError(f"No class folders in {root!r}; {base.SEE_LAYOUT}.")
    return names


class ExpressionFolder(base.FaceFolderBuilder):
    """Any expression database arranged as one folder per class."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = LAYOUT

    @staticmethod
    def without_sequences(data) -> str:
        if data.get("sequence_regex", ""):
            return ""
        return "expression_folder has them only with data.sequence_regex"

    @staticmethod
    def records(config: base.FaceConfig, root: str) -> list[base.Record]:
        subject_re = _compile("data.subject_regex", config.option("subject_regex", r"^S(\d+)_"))
        seq_pattern = config.option("sequence_regex", "")
        seq_re = _compile("data.sequence_regex", seq_pattern) if seq_pattern else None
        if seq_re is not None and not {"sequence", "frame"} <= set(seq_re.groupindex):
            raise ValueError(
                f"data.sequence_regex {seq_pattern!r} needs groups 'sequence' and 'frame'."
            )
        # (class, subject name, sequence name) -> [(frame, path)]
        seqs: dict[tuple[int, str, str], list[tuple[int, str]]] = defaultdict(list)
        for label, cls in enumerate(config.class_names):
            folder = os.path.join(root, cls)
            if not os.path.isdir(folder):
                raise FileNotFoundError(f"Missing class folder {folder!r}; {base.SEE_LAYOUT}.")
            names = list_images(folder)
            if not names:
                raise DataError(f"Class folder {folder!r} holds no images.")
            for n in names:
                m = subject_re.search(n)
                if m is None:
                    raise DataError(
                        f"File {os.path.join(folder, n)!r} does not match data.subject_regex "
                        f"{subject_re.pattern!r}."
                    )
                subject = _group(m, "subject")
                if seq_re is None:
                    seqs[(label, subject, n)].append((0, os.path.join(folder, n)))
                    continue
                ms = seq_re.search(n)
                if ms is None:
                    raise DataError(
                        f"File {os.path.join(folder, n)!r} does not match data.sequence_regex "
                        f"{seq_pattern!r}."
                    )
                seqs[(label, subject, ms.group("sequence"))].append(
                    (int(ms.group("frame")), os.path.join(folder, n))
                )
        subject_ids = base.subject_numbers([key[1] for key in seqs])
        k = config.label_last_frames if seq_re is not None else 1
        records = []
        for seq_id, key in enumerate(sorted(seqs)):
            label, subject, _ = key
            frames = sorted(seqs[key])
            chosen = [
                base.Record(
                    path=path,
                    label=label,
                    subject=subject_ids[subject],
                    sequence=seq_id,
                    frame=frame,
                    is_peak=frame == frames[-1][0],
                )
                for frame, path in frames[-k:]
            ]
            if seq_re is not None and config.option("neutral_first_frames"):
                records += base.first_frame_record(chosen, *frames[0])
            records += chosen
        return records
