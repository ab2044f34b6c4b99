"""`keras_se.applications`: the SE model zoo, faithful to the paper.

Each constructor is a thin factory over the stock `keras.applications` one: the same
arguments (plus `ratio`, `squeeze`, `gate`, `init`, `placement`, `select` and other
`SqueezeExcite` options), the stock model, then `keras_se.add_se_blocks` with the
placement the paper uses for the family. `weights="imagenet"` loads Keras's ImageNet
weights into the base and adds SE blocks that start as the identity, so the model
predicts exactly what the pretrained one does, ready for fine-tuning.

Each family's module (`keras_se.applications.resnet`, `.mobilenet`, ...) holds its
constructors beside the stock `preprocess_input` and `decode_predictions`.

Where the SE blocks go (each family's module docstring says why):

- ResNet, ResNetV2, Xception, InceptionResNetV2, ConvNeXt: `"residual"`, on every
  residual branch before the merge (the SE-ResNet module);
- VGG: `"post_activation"`, after every convolution's ReLU;
- MobileNet: `"post_activation"` on the 13 pointwise convolutions (the paper's
  SE-MobileNet);
- MobileNetV2: after each block's depthwise ReLU6 (as MnasNet and MobileNetV3);
- InceptionV3: `"module_output"`, on each Inception module's output;
- DenseNet: `"post_activation"`, on each dense layer's bottleneck;
- NASNet: `"module_output"`, on each cell's output.

MobileNetV3, EfficientNet and EfficientNetV2 already carry SE blocks: there is no
SE variant of them, and `get_model` says so.

Weights: `None`, `"imagenet"` or a path. A file that holds `SqueezeExcite` weights
(`holds_se_weights`) is the SE model's own and loads whole; any other file is the
stock model's, loaded by the stock constructor before SE is added.

Trained SE weights: `SEResNet50/101/152(weights="timm:legacy_seresnet50.in1k")` loads
timm's ImageNet-trained SE-ResNets, and `from_timm` builds any supported timm
SE-ResNet (`keras_se.applications.timm_weights`).

Example:

>>> from keras_se import applications
>>> model = applications.SEMobileNet(weights=None, input_shape=(64, 64, 3), alpha=0.25)
>>> sum(type(layer).__name__ == "SqueezeExcite" for layer in model.layers)
13
>>> applications.get_model("SEResNet50", weights=None).count_params()
28167704

Reference:
    - [Hu et al., 2018, Squeeze-and-Excitation Networks](https://arxiv.org/abs/1709.01507)
"""

from keras_se.applications._builder import (
    DEFAULT_INPUT_SIZES,
    Family,
    canonical_name,
    default_input_size,
    holds_se_weights,
)
from keras_se.applications.convnext import (
    SEConvNeXtBase,
    SEConvNeXtLarge,
    SEConvNeXtSmall,
    SEConvNeXtTiny,
    SEConvNeXtXLarge,
)
from keras_se.applications.densenet import SEDenseNet121, SEDenseNet169, SEDenseNet201
from keras_se.applications.inception_resnet_v2 import SEInceptionResNetV2
from keras_se.applications.inception_v3 import SEInceptionV3
from keras_se.applications.mobilenet import SEMobileNet
from keras_se.applications.mobilenet_v2 import SEMobileNetV2
from keras_se.applications.nasnet import SENASNetLarge, SENASNetMobile
from keras_se.applications.registry import (
    ALREADY_SE,
    ModelInfo,
    get_model,
    list_models,
    model_info,
)
from keras_se.applications.resnet import SEResNet50, SEResNet101, SEResNet152
from keras_se.applications.resnet_v2 import SEResNet50V2, SEResNet101V2, SEResNet152V2
from keras_se.applications.timm_weights import from_timm
from keras_se.applications.vgg16 import SEVGG16
from keras_se.applications.vgg19 import SEVGG19
from keras_se.applications.xception import SEXception

__all__ = [
    "ALREADY_SE",
    "DEFAULT_INPUT_SIZES",
    "Family",
    "ModelInfo",
    "SEConvNeXtBase",
    "SEConvNeXtLarge",
    "SEConvNeXtSmall",
    "SEConvNeXtTiny",
    "SEConvNeXtXLarge",
    "SEDenseNet121",
    "SEDenseNet169",
    "SEDenseNet201",
    "SEInceptionResNetV2",
    "SEInceptionV3",
    "SEMobileNet",
    "SEMobileNetV2",
    "SENASNetLarge",
    "SENASNetMobile",
    "SEResNet50",
    "SEResNet50V2",
    "SEResNet101",
    "SEResNet101V2",
    "SEResNet152",
    "SEResNet152V2",
    "SEVGG16",
    "SEVGG19",
    "SEXception",
    "canonical_name",
    "default_input_size",
    "from_timm",
    "get_model",
    "holds_se_weights",
    "list_models",
    "model_info",
]
