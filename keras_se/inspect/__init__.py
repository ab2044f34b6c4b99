"""What SE blocks learn: the gates a model computes, profiled per class, and plots.

The excitation of an SE block is the per-channel gate it multiplies its input
by (`keras_se.SqueezeExcite.excitation`). Hu et al. (2018, Section 7.2,
Fig. 6) average it over the images of a class and compare classes: in early
blocks the gates hardly depend on the class, in late blocks they do.

- `excitation_model(model)`: a model that returns every SE gate of `model`
  (nested models included) for an input batch, as a dict keyed by SE layer name.
- `excitation_profile(model, dataset)`: the mean gate per channel and SE block,
  over a whole `tf.data` dataset, overall and per class (an `ExcitationProfile`).
- `plot_excitation(profile, path)` and `plot_class_specificity(profile, path)`:
  PNG plots of a profile (matplotlib, no display needed).

Modules: `gates` (the `Excitation` probe layer and `excitation_model`), `profile`
(`ExcitationProfile`, `excitation_profile`), `plots`.
"""

from keras_se.inspect.gates import (
    Excitation,
    excitation_model,
    require_se_layers,  # noqa: F401  (the command line's check; not in `__all__`)
)
from keras_se.inspect.plots import plot_class_specificity, plot_excitation
from keras_se.inspect.profile import ExcitationProfile, excitation_profile

__all__ = [
    "Excitation",
    "ExcitationProfile",
    "excitation_model",
    "excitation_profile",
    "plot_class_specificity",
    "plot_excitation",
]
