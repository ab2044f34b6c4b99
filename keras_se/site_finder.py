"""How `find_se_sites` and `add_se_blocks` find their sites: a walk over one model's
node graph (`Graph`) and, per placement, the rules that pick the tensors SE goes on."""

from __future__ import annotations

import collections

import keras

from keras_se import _keras_compat as compat
from keras_se import sites as _sites
from keras_se.sites import (
    Site,
    Skipped,
    check_model,
    check_placement,
    check_ratio,
    compile_select,
    graph_of,
    is_container,
    is_se_layer,
)
from keras_se.widths import bottleneck_width, se_params

# The layer kinds (`CONV_LAYERS`, `RESIDUAL_MERGE_CLASS_NAMES`, ...) are read from
# `keras_se.sites` at each use, so that rebinding them there (as its comments invite)
# takes effect here.
_LINEAR_NAMES = ("linear", None)
# The SqueezeExcite options that set the bottleneck width.
_WIDTH_OPTIONS = ("units", "min_units", "divisor", "round_limit")


# ----------------------------------------------------------------------------- graph
class Graph:
    """Producer and consumer maps over one model's nodes (no nesting)."""

    def __init__(self, model):
        self.model = model
        fn = graph_of(model)
        self.nodes = []
        self.ordinal = {}
        counts = collections.Counter()
        by_depth = compat.nodes_by_depth(fn)
        for depth in sorted(by_depth, reverse=True):
            for node in by_depth[depth]:
                if not node.operation or node.is_input:
                    continue
                self.ordinal[id(node)] = counts[id(node.operation)]
                counts[id(node.operation)] += 1
                self.nodes.append(node)
        self.node_ids = {id(n) for n in self.nodes}
        self.consumers = collections.defaultdict(list)  # id(tensor) -> [(node, index)]
        for node in self.nodes:
            for i, t in enumerate(node.input_tensors):
                self.consumers[id(t)].append((node, i))
        self.output_ids = {id(t) for t in fn.outputs}

    def producer(self, tensor):
        """The node that made `tensor` in this model, or None for an input."""
        made = compat.producer(tensor)
        if made is None or id(made[1]) not in self.node_ids:
            return None
        return made[1]

    def key(self, node):
        return (id(node.operation), self.ordinal[id(node)])

    def single_input(self, node):
        ins = node.input_tensors
        return ins[0] if len(ins) == 1 else None

    def ancestors(self, tensor, depth: int | None = None):
        """Ids of every tensor `tensor` depends on in this model, itself included; with
        `depth`, only those fewer than `depth` producers up (`tensor` is level 0)."""
        seen, frontier, level = set(), [tensor], 0
        while frontier and (depth is None or level < depth):
            nxt = []
            for t in frontier:
                if id(t) in seen:
                    continue
                seen.add(id(t))
                node = self.producer(t)
                if node is not None:
                    nxt.extend(node.input_tensors)
            frontier, level = nxt, level + 1
        return seen

    def branch(self, tensor, stop_ids):
        """Nodes between `tensor` and the first tensors whose ids are in `stop_ids`.

        Returns the nodes and the entry tensors (the stop tensors that the branch
        consumes, with the consuming node and input index).
        """
        nodes, entries, seen = [], [], set()
        stack = [tensor]
        while stack:
            t = stack.pop()
            if id(t) in stop_ids or id(t) in seen:
                continue
            seen.add(id(t))
            node = self.producer(t)
            if node is None:
                continue
            nodes.append(node)
            for i, x in enumerate(node.input_tensors):
                if id(x) in stop_ids:
                    entries.append((x, node, i))
                else:
                    stack.append(x)
        return nodes, entries


# ------------------------------------------------------------------- layer predicates
def _activation_name(fn):
    if fn is None:
        return None
    return getattr(fn, "__name__", type(fn).__name__)


def is_nonlinear_activation_layer(layer) -> bool:
    if isinstance(layer, keras.layers.Activation):
        return _activation_name(layer.activation) not in _LINEAR_NAMES
    return isinstance(layer, _sites.ACTIVATION_LAYERS)


def has_fused_activation(layer) -> bool:
    return _activation_name(getattr(layer, "activation", None)) not in _LINEAR_NAMES


def _data_format(layer):
    fmt = getattr(layer, "data_format", None)
    if fmt in ("channels_last", "channels_first"):
        return fmt
    return keras.config.image_data_format()


def _channels_and_spatial(tensor, data_format):
    shape = tuple(tensor.shape)
    if len(shape) < 3:
        return None, None
    if data_format == "channels_first":
        return shape[1], shape[2:]
    return shape[-1], shape[1:-1]


def _spatial_is_one(spatial):
    return all(d == 1 for d in spatial)


# ------------------------------------------------------------------------ site finder
class _Finder:
    def __init__(self, placement, select, skip_existing, ratio, se_kwargs):
        self.placement = placement
        self.select = compile_select(select)
        self.skip_existing = skip_existing
        self.ratio = ratio
        self.se_kwargs = se_kwargs
        self.sites = []
        self.skipped = []
        self.sites_by_model = {}  # id(model) -> {key: site}
        self.before_by_model = {}  # id(model) -> {target key: [(index, site)]}
        self._visited = set()
        self._after_by_layer = {}  # (id(model), id(layer)) -> site, for shared layers

    # -- recursion over nested models
    def visit(self, model, path=()):
        if id(model) in self._visited:
            return
        self._visited.add(id(model))
        graph = Graph(model)
        self.sites_by_model[id(model)] = {}
        self.before_by_model[id(model)] = collections.defaultdict(list)
        names = {layer.name for layer in model.layers}
        for node in graph.nodes:
            if is_container(node.operation):
                self.visit(node.operation, path + (node.operation.name,))
        getattr(self, "_find_" + self.placement)(graph, path, names)

    # -- helpers
    def _skip(self, path, name, reason):
        self.skipped.append(Skipped("/".join(path + (name,)), reason))

    def _feeds_se(self, graph, tensor):
        """True if `tensor` already feeds an SE block or a gating multiply."""
        for node, _ in graph.consumers.get(id(tensor), ()):
            layer = node.operation
            if is_se_layer(layer):
                return True
            if isinstance(layer, keras.layers.Multiply):
                for other in node.input_tensors:
                    if other is tensor:
                        continue
                    if id(tensor) in graph.ancestors(other, depth=16):
                        return True
        return False

    def _in_gate_path(self, graph, node):
        """True for a node inside an existing SE/gating branch (1x1 maps there)."""
        for t in node.outputs:
            for consumer, _ in graph.consumers.get(id(t), ()):
                if isinstance(consumer.operation, keras.layers.Multiply):
                    # A broadcast operand of a multiply is a gate.
                    if tuple(t.shape) != tuple(consumer.outputs[0].shape):
                        return True
        return False

    def _add(self, graph, path, names, *, anchor_node, tensor, position, data_format,
             targets=()):
        layer = anchor_node.operation if anchor_node is not None else None
        anchor = layer.name if layer is not None else _tensor_name(tensor)
        if position == "after" and layer is not None:
            # A shared layer called again: its calls share one SE layer.
            shared = self._after_by_layer.get((id(graph.model), id(layer)))
            if shared is not None:
                self.sites_by_model[id(graph.model)][graph.key(anchor_node)] = shared
                return
        channels, spatial = _channels_and_spatial(tensor, data_format)
        if channels is None:
            self._skip(path, anchor, "tensor has no spatial axes (rank below 3)")
            return
        if _spatial_is_one(spatial):
            self._skip(path, anchor, "spatial size is 1 (1x1 map): nothing to squeeze")
            return
        proposed = dict(anchor=anchor, path=path, placement=self.placement, position=position,
                        targets=[(n.operation.name, i) for n, i in targets],
                        channels=channels, spatial_shape=spatial, se_name="",
                        data_format=data_format)
        site = Site(**proposed)
        if not self.select(site):
            self._skip(path, anchor, "not selected")
            return
        ratio = self.ratio(site) if callable(self.ratio) else self.ratio
        se_name = _unique_name(anchor + "_se", names)
        names.add(se_name)
        units = bottleneck_width(
            channels,
            ratio,
            **{k: self.se_kwargs[k] for k in _WIDTH_OPTIONS if k in self.se_kwargs},
        )
        params = se_params(channels, units, self.se_kwargs.get("use_bias", True))
        site = Site(
            **proposed | dict(se_name=se_name),
            params=params,
            ratio=ratio,
            _key=graph.key(anchor_node) if (position == "after") else None,
            _target_keys=[(graph.key(n), i) for n, i in targets],
            _anchor_layer=layer,
        )
        self.sites.append(site)
        if position == "after":
            self.sites_by_model[id(graph.model)][site._key] = site
            self._after_by_layer[(id(graph.model), id(layer))] = site
        else:
            for key, index in site._target_keys:
                self.before_by_model[id(graph.model)][key].append((index, site))

    # -- placements
    def _find_post_activation(self, graph, path, names):
        for node in graph.nodes:
            layer = node.operation
            if is_container(layer) or is_se_layer(layer):
                continue
            conv = None
            if is_nonlinear_activation_layer(layer):
                x = graph.single_input(node)
                # Walk back through normalization layers to a convolution.
                while x is not None:
                    p = graph.producer(x)
                    if p is None:
                        break
                    if isinstance(p.operation, _sites.NORM_LAYERS):
                        x = graph.single_input(p)
                        continue
                    if isinstance(p.operation, _sites.CONV_LAYERS) and not has_fused_activation(
                        p.operation
                    ):
                        conv = p.operation
                    break
            elif isinstance(layer, _sites.CONV_LAYERS) and has_fused_activation(layer):
                conv = layer
            if conv is None:
                continue
            if len(node.outputs) != 1:
                continue
            out = node.outputs[0]
            if self._in_gate_path(graph, node):
                self._skip(path, layer.name, "inside an existing gating (SE) path")
                continue
            if self.skip_existing and self._feeds_se(graph, out):
                self._skip(path, layer.name, "already feeds an SE block")
                continue
            self._add(graph, path, names, anchor_node=node, tensor=out, position="after",
                      data_format=_data_format(conv))

    def _residual_merges(self, graph, path):
        """Yields (merge node, residual index, shortcut index, residual nodes, entries)."""
        for node in graph.nodes:
            if type(node.operation).__name__ not in _sites.RESIDUAL_MERGE_CLASS_NAMES:
                continue
            ins = node.input_tensors
            if len(ins) != 2:
                continue
            anc = [graph.ancestors(t) for t in ins]
            branch0, entries0 = graph.branch(ins[0], anc[1])
            branch1, entries1 = graph.branch(ins[1], anc[0])
            convs = [sum(isinstance(n.operation, _sites.CONV_LAYERS) or is_container(n.operation)
                         for n in b) for b in (branch0, branch1)]
            if convs[0] == convs[1]:
                self._skip(path, node.operation.name,
                           "merge with no distinguishable residual branch and shortcut")
                continue
            res = 0 if convs[0] > convs[1] else 1
            yield (node, res, 1 - res, (branch0, branch1)[res], (entries0, entries1)[res])

    def _data_format_near(self, nodes):
        for n in nodes:
            if isinstance(n.operation, _sites.CONV_LAYERS):
                return _data_format(n.operation)
        return keras.config.image_data_format()

    def _find_residual(self, graph, path, names):
        for merge, res, _, branch, _ in self._residual_merges(graph, path):
            tensor = merge.input_tensors[res]
            fmt = self._data_format_near(branch)
            producer = graph.producer(tensor)
            if self.skip_existing and producer is not None and is_se_layer(producer.operation):
                self._skip(path, merge.operation.name, "residual branch already ends in SE")
                continue
            single = len(graph.consumers[id(tensor)]) == 1 and producer is not None
            if single and len(producer.outputs) == 1:
                self._add(graph, path, names, anchor_node=producer, tensor=tensor,
                          position="after", data_format=fmt)
            else:
                self._add(graph, path, names, anchor_node=merge, tensor=tensor,
                          position="before", data_format=fmt, targets=[(merge, res)])

    def _find_residual_pre(self, graph, path, names):
        for merge, _, _, branch, entries in self._residual_merges(graph, path):
            by_tensor = collections.OrderedDict()
            for t, node, i in entries:
                by_tensor.setdefault(id(t), (t, []))[1].append((node, i))
            if len(by_tensor) != 1:
                self._skip(path, merge.operation.name,
                           "residual branch has more than one input tensor")
                continue
            (tensor, targets), = by_tensor.values()
            if self.skip_existing and (
                any(is_se_layer(n.operation) for n, _ in targets)
                or (graph.producer(tensor) is not None
                    and is_se_layer(graph.producer(tensor).operation))
            ):
                self._skip(path, merge.operation.name, "residual branch already starts with SE")
                continue
            producer = graph.producer(tensor)
            self._add(graph, path, names, anchor_node=producer, tensor=tensor,
                      position="before", data_format=self._data_format_near(branch),
                      targets=targets)

    def _find_residual_post(self, graph, path, names):
        for merge, _, _, branch, _ in self._residual_merges(graph, path):
            out = merge.outputs[0]
            anchor = merge
            consumers = graph.consumers.get(id(out), [])
            if len(consumers) == 1 and is_nonlinear_activation_layer(consumers[0][0].operation):
                anchor = consumers[0][0]
                out = anchor.outputs[0]
            if self.skip_existing and self._feeds_se(graph, out):
                self._skip(path, anchor.operation.name, "already feeds an SE block")
                continue
            self._add(graph, path, names, anchor_node=anchor, tensor=out, position="after",
                      data_format=self._data_format_near(branch))

    def _find_residual_identity(self, graph, path, names):
        for merge, _, short, branch, _ in self._residual_merges(graph, path):
            tensor = merge.input_tensors[short]
            producer = graph.producer(tensor)
            if self.skip_existing and producer is not None and is_se_layer(producer.operation):
                self._skip(path, merge.operation.name, "shortcut already carries SE")
                continue
            self._add(graph, path, names, anchor_node=merge, tensor=tensor, position="before",
                      data_format=self._data_format_near(branch), targets=[(merge, short)])

    def _find_module_output(self, graph, path, names):
        for node in graph.nodes:
            if not isinstance(node.operation, keras.layers.Concatenate):
                continue
            if len(node.input_tensors) < 2:
                continue
            out = node.outputs[0]
            if self.skip_existing and self._feeds_se(graph, out):
                self._skip(path, node.operation.name, "already feeds an SE block")
                continue
            fmt = "channels_first" if node.operation.axis == 1 and len(out.shape) > 2 else (
                "channels_last")
            self._add(graph, path, names, anchor_node=node, tensor=out, position="after",
                      data_format=fmt)


def _tensor_name(tensor):
    return compat.producing_layer_name(tensor) or getattr(tensor, "name", "input")


def _unique_name(name, taken):
    if name not in taken:
        return name
    i = 2
    while f"{name}_{i}" in taken:
        i += 1
    return f"{name}_{i}"


def run_finder(model, placement, select, skip_existing, ratio=16, se_kwargs=None):
    check_model(model, "rewritten")
    check_placement(placement)
    check_ratio(ratio)
    finder = _Finder(placement, select, skip_existing, ratio, se_kwargs or {})
    finder.visit(model)
    return finder
