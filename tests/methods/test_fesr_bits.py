"""FESR's numbers are pinned: 50 demo steps give the state recorded before the method interface
was introduced (commit bb4020a), to the bit. A change that moves FESR's arithmetic fails here."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# tests/methods/fesr_bits_driver.py at commit bb4020a (before the redesign), AVX2 cap.
RECORDED_DIGEST = "6ffbe27fbd1feb1f4db590fff0a777ff00d06f68799cf06daec13753abcb46d8"


def test_fifty_demo_steps_are_bit_identical_to_the_recorded_state(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "tests.methods.fesr_bits_driver", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    assert json.loads(out.stdout.strip().splitlines()[-1])["digest"] == RECORDED_DIGEST
