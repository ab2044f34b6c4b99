"""keras-se: Squeeze-and-Excitation for the Keras models you already have."""

from keras_se.layers import SqueezeExcite, make_divisible

__version__ = "0.1.0"

__all__ = ["SqueezeExcite", "make_divisible", "__version__"]
