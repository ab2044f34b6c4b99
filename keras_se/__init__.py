"""keras-se: Squeeze-and-Excitation for the Keras models you already have."""

from keras_se.layers import SqueezeExcite, make_divisible
from keras_se.rewrite import NoSitesError, SEReport, add_se_blocks
from keras_se.sites import PLACEMENTS, Site, Skipped, find_se_sites

__version__ = "0.1.0"

__all__ = [
    "PLACEMENTS",
    "NoSitesError",
    "SEReport",
    "Site",
    "Skipped",
    "SqueezeExcite",
    "__version__",
    "add_se_blocks",
    "find_se_sites",
    "make_divisible",
]
