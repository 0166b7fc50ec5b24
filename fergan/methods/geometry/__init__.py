"""Geometry-guided pose-invariant FER (paper geometry_guided_pose_invariant_fer): a landmark
embedding E, an encoder-decoder generator G conditioned on target landmarks, discriminators on
(face, landmarks) pairs and on the identity code, and a classifier trained with G.

Present so far: the networks of Table II (`networks.py`) and the losses of Eqs. 3-9
(`losses.py`); the method is not registered until its training step exists.
"""
