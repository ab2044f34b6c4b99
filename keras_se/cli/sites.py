"""`keras-se sites MODEL`: where SE blocks would go, with the parameters they add."""

from __future__ import annotations

import json

from keras_se.cli import command
from keras_se.cli._args import (
    add_model_argument,
    add_se_arguments,
    input_shape,
    positive_float,
    se_options,
    usage_errors,
)
from keras_se.cli._output import relative
from keras_se.cli._report import site_table


def add_arguments(p):
    add_model_argument(p)
    add_se_arguments(p)
    p.add_argument(
        "--input-shape",
        type=input_shape,
        default=None,
        help="input shape H,W,C to build the model at (sites depend on it only through "
        "the spatial sizes). Default: the model's",
    )
    p.add_argument("--alpha", type=positive_float, default=None, help="MobileNet width multiplier")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


@command("sites", help="list where SE blocks would go", arguments=add_arguments)
def main(args) -> int:
    """A table of where SE would go: site, channels, spatial size, parameters added.

    The model is built with random weights (sites do not depend on them).
    """
    from keras_se.models import build_model, resolve_model
    from keras_se.sites import find_se_sites, se_layers

    with usage_errors():
        spec = resolve_model(args.model)
        placement, select, options = se_options(args, spec)
        model = build_model(spec, weights=None, input_shape=args.input_shape, alpha=args.alpha)
        sites = find_se_sites(
            model, placement, select=select, ratio=args.ratio, skip_existing=True, **options
        )
    total = int(model.count_params())
    added = int(sum(s.params for s in sites))
    existing = len(se_layers(model))
    if args.json:
        print(json.dumps({
            "model": spec.name,
            "placement": placement,
            "select": select,
            "params_before": total,
            "params_added": added,
            "existing_se_layers": existing,
            "sites": [s.to_dict() for s in sites],
        }, indent=2))
        return 0
    where = f"placement {placement!r}" + (f", select {select!r}" if select else "")
    name = relative(spec.path) if spec.kind == "file" else spec.name
    print(f"{name}: {len(sites)} SE sites, {where}")
    if sites:
        print(site_table(sites))
    pct = 100.0 * added / total if total else 0.0
    print(f"parameters: {total:,} -> {total + added:,} (+{added:,}, +{pct:.2f}%)")
    if existing:
        print(f"the model already has {existing} SE layer(s); sites that carry one are skipped")
    return 0
