"""SE arguments as a backbone config stores them, and the plain rewrite they replay.

An SE backbone's config holds the `add_se_blocks` arguments under `se`: a dict
per rewrite (`make_spec`). A callable `select` or `ratio` cannot be saved, so
its answers are recorded candidate by candidate (`Replay`) and replayed when the
backbone is rebuilt from its config.
"""

from __future__ import annotations

import keras

from keras_se.hub._access import PLAIN_REWRITE


def serializable(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [serializable(v) for v in value]
    if isinstance(value, dict):
        return {k: serializable(v) for k, v in value.items()}
    return keras.saving.serialize_keras_object(value)


def make_spec(placement, ratio, select, init, skip_existing, se_options):
    return {
        "placement": placement,
        "select": select,
        "ratio": ratio,
        "init": init,
        "skip_existing": bool(skip_existing),
        **se_options,
    }


def normalize_specs(se):
    if se is None:
        raise TypeError(
            "An SE backbone needs its SE arguments: `se` must be a dict such as "
            "{'placement': 'residual'} or a list of them. Received: se=None"
        )
    specs = [se] if isinstance(se, dict) else list(se)
    out = []
    for s in specs:
        if not isinstance(s, dict) or "placement" not in s:
            raise TypeError(
                "`se` must be a dict of add_se_blocks arguments with a `placement`, or a "
                f"list of them. Received: se={se!r}"
            )
        out.append(dict(s))
    return out


class Replay:
    """A select or ratio callable, recorded on the first rewrite and replayed after.

    The site finder calls `select` once per candidate and `ratio` once per
    selected site, in graph order, which is the same for a backbone rebuilt from
    the same config. A user's callable cannot be saved in a config; its answers
    can.
    """

    def __init__(self, fn=None, answers=None):
        self.fn = fn
        self.answers = list(answers) if answers is not None else []
        self.calls = 0

    def __call__(self, site):
        i = self.calls
        self.calls += 1
        if self.fn is not None:
            answer = self.fn(site)
            answer = bool(answer) if isinstance(answer, (bool, type(None))) else int(answer)
            self.answers.append(answer)
            return answer
        if i >= len(self.answers):
            raise ValueError(
                "The backbone's graph has more SE candidates than when its SE config was "
                f"recorded ({len(self.answers)}); it cannot be rebuilt from this config."
            )
        return self.answers[i]


def runtime_args(spec):
    """add_se_blocks keyword arguments from a spec; callables for recorded answers."""
    args = dict(spec)
    select, ratio = args.get("select"), args.get("ratio", 16)
    if isinstance(select, dict):
        args["select"] = Replay(answers=[bool(a) for a in select["recorded"]])
    if isinstance(ratio, dict):
        args["ratio"] = Replay(answers=[int(a) for a in ratio["recorded"]])
    return args


def plain_rewrite(model, spec):
    """`keras_se.add_se_blocks` on the graph (no hub dispatch): (plain model, report)."""
    from keras_se.rewrite import add_se_blocks

    args = runtime_args(spec)
    placement = args.pop("placement")
    token = PLAIN_REWRITE.set(True)
    try:
        return add_se_blocks(model, placement, return_report=True, **args)
    finally:
        PLAIN_REWRITE.reset(token)
