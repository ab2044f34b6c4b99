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
        # keras.models.clone_model's `call_function` and a working
        # `recursive` arrived in Keras 3.4; TF 2.16 is the first to ship Keras 3.
        "tensorflow>=2.16",
        "keras>=3.4,<4",
        "tensorflow-datasets>=4.9",
        "matplotlib>=3.7",
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
        ],
    },
    entry_points={"console_scripts": ["keras-se=keras_se.cli:main"]},
)
