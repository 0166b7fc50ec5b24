"""Networks of Tables I-II: generator, discriminators, LightCNN-29 and the recognizer."""

from fergan.models.discriminators import Dimg, Dz
from fergan.models.generator import Gdec, Genc, Generator
from fergan.models.lightcnn import LightCNN29, to_lightcnn_input
from fergan.models.recognizer import RecognizerHead

__all__ = [
    "Dimg",
    "Dz",
    "Gdec",
    "Genc",
    "Generator",
    "LightCNN29",
    "RecognizerHead",
    "to_lightcnn_input",
]
