"""The core's public names (every name here without an underscore), which `keras_se`
re-exports; importing this loads Keras.

`import keras_se` imports this module at once; the `keras-se` command line imports
it when a command runs, after its arguments are parsed, so that `--help`, `--version`
and usage errors answer without loading Keras.
"""

from keras_se.hub import from_preset
from keras_se.hub import install_import_hook as _install_import_hook
from keras_se.layers import SqueezeExcite
from keras_se.rewrite import NoSitesError, SEReport, add_se_blocks
from keras_se.sites import PLACEMENTS, Site, Skipped, find_se_sites
from keras_se.transfer import add_classifier_head, freeze_backbone
from keras_se.widths import make_divisible

# SE classes for keras-hub models, registered once keras_hub is imported (keras-hub
# looks a preset's class up in Keras's registry).
_install_import_hook()
