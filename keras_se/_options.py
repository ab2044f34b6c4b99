"""The names of keras-se's options, in one module that needs neither Keras nor TensorFlow.

The modules that take these options re-export them (`keras_se.layers.GATES`,
`keras_se.sites.PLACEMENTS`, `keras_se.export.FORMATS`, ...). The command line builds
its parser from here, so `keras-se --help`, `--version` and usage errors answer
without loading Keras (about 0.1 s instead of 4 s).
"""

# SqueezeExcite (keras_se/layers.py)
SQUEEZES = ("avg", "max", "avg_max")
GATES = ("sigmoid", "hard_sigmoid", "tanh", "relu")
INITS = ("standard", "identity")
DATA_FORMATS = ("channels_last", "channels_first")

# Where add_se_blocks puts SE blocks (keras_se/sites.py)
PLACEMENTS = (
    "post_activation",
    "residual",
    "residual_pre",
    "residual_post",
    "residual_identity",
    "module_output",
)

# Fine-tuning (keras_se/finetune.py, keras_se/distribute.py)
FREEZE_MODES = ("backbone", "none")
SCHEDULES = ("cosine", "constant")
STRATEGIES = ("default", "mirrored", "multiworker")

# The builtin dataset's name (keras_se/builtin_data.py)
BUILTIN = "builtin"

# Export (keras_se/export/)
FORMATS = ("saved_model", "tflite", "onnx")
QUANTIZATIONS = ("none", "float16", "int8")
