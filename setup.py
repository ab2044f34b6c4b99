from setuptools import setup

setup(
    name="keras-se",
    version="0.1.0",
    description=(
        "Squeeze-and-Excitation for Keras 3: a layer, a graph rewrite that "
        "retrofits SE into existing (pretrained) models, and an SE model zoo."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=["keras_se", "keras_se.applications"],
    package_dir={"keras_se": "keras_se", "keras_se.applications": "applications"},
    install_requires=[
        # TF 2.16 is the first release that ships Keras 3. keras.models.clone_model
        # has `call_function` since Keras 3.4, and `recursive=True` enters every
        # nesting level since 3.14 (keras-team/keras#22276).
        "tensorflow>=2.16",
        "keras>=3.14,<4",
        "tensorflow-datasets>=4.9",
        "matplotlib>=3.7",
        # tensorflow-datasets 4.9 imports importlib_resources when it builds a
        # dataset (keras_se_builtin) but no longer gets it through etils.
        "importlib-resources>=5",
    ],
    extras_require={
        "test": [
            "pytest>=7.4",
            "pytest-xdist>=3.5",
            "nbclient>=0.9",
            "nbformat>=5.9",
            "ipykernel>=6.25",
            "ai-edge-litert>=1.0",
            "ruff>=0.5",
            # Real photographs for the fine-tuning tests and benchmarks: the wheel
            # bundles astronaut, chelsea, coffee, rocket, brick, grass, gravel
            # (public domain / CC0), read offline by tests/_real_images.py.
            "scikit-image>=0.19",
        ],
    },
    entry_points={"console_scripts": ["keras-se=keras_se.cli:main"]},
)
