import re

from setuptools import setup

VERSION = re.search(
    r'^__version__ = "([^"]+)"', open("keras_se/__init__.py", encoding="utf-8").read(), re.M
).group(1)

# The core (layer, sites, rewrite, zoo, gate analysis, model resolution) needs only
# keras and numpy and runs on every Keras backend. A plain `pip install keras-se`
# also brings TensorFlow, the product's main backend, and what the edge (data,
# fine-tuning, export, command line) needs; the extras bring the other backends,
# keras-hub, ONNX and timm's checkpoints.
CORE = [
    # keras.models.clone_model has `call_function` since Keras 3.4; 3.14 is the lowest
    # release the test suite runs against (`make test` runs the core tests on it).
    "keras>=3.14,<4",
    "numpy>=1.26",
]
EDGE = [
    "tensorflow>=2.16",  # the first release that ships Keras 3
    "tensorflow-datasets>=4.9",
    "matplotlib>=3.7",
    # tensorflow-datasets 4.9 imports importlib_resources when it builds a dataset
    # (keras_se_builtin) but no longer gets it through etils.
    "importlib-resources>=5",
]
EXTRAS = {
    "jax": ["jax[cpu]>=0.4.30"],
    # PyPI's Linux torch wheel is a CUDA build (several GB); for a CPU-only machine
    # install torch from https://download.pytorch.org/whl/cpu first (README).
    "torch": ["torch>=2.4"],
    # keras-hub models (Backbones, Tasks, presets): keras_se.hub. keras-hub 0.32 needs
    # Python 3.11+ and Keras 3.15, and brings tensorflow-text.
    "hub": ["keras-hub>=0.32; python_version>='3.11'"],
    # `pip install keras-se[onnx]`: keras_se.export_onnx, `keras-se export --format onnx`.
    # tf2onnx 1.16 and older pin protobuf 3.20, which TensorFlow 2.21 cannot use.
    "onnx": ["onnx>=1.16", "onnxruntime>=1.18", "tf2onnx>=1.17"],
    # Trained SE-ResNets from timm (keras_se.applications.timm_weights): .safetensors
    # through safetensors' NumPy API, downloads through huggingface_hub's cache, the
    # v1.5 / ResNet-D checkpoints on keras-hub's ResNetBackbone. No torch needed.
    "timm": [
        "safetensors>=0.4",
        "huggingface_hub>=0.23",
        "keras-hub>=0.32; python_version>='3.11'",
    ],
}
EXTRAS["all"] = sorted({r for reqs in EXTRAS.values() for r in reqs})
EXTRAS["test"] = [
    # The timm conversion tests compare with timm itself (which pulls torch).
    "timm>=1.0",
    "pytest>=7.4",
    "pytest-xdist>=3.5",
    "nbclient>=0.9",
    "nbformat>=5.9",
    "ipykernel>=6.25",
    "ai-edge-litert>=1.0",
    "ruff>=0.5",
    # Real photographs for the fine-tuning tests and benchmarks: the wheel bundles
    # astronaut, chelsea, coffee, rocket, brick, grass, gravel (public domain / CC0),
    # read offline by tests/_real_images.py (scikit-image itself is never imported).
    "scikit-image>=0.19",
]

setup(
    name="keras-se",
    version=VERSION,
    description=(
        "Squeeze-and-Excitation for Keras 3: a layer, a graph rewrite that "
        "retrofits SE into existing (pretrained) models, and an SE model zoo."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=[
        "keras_se",
        "keras_se.applications",
        "keras_se.cli",
        "keras_se.export",
        "keras_se.hub",
        "keras_se.inspect",
    ],
    package_dir={"keras_se": "keras_se", "keras_se.applications": "applications"},
    install_requires=CORE + EDGE,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["keras-se=keras_se.cli:main"]},
)
