"""draw_program: a compiled program (micrornn.compile) as a graphviz Digraph, one node per primitive call.

Each call of the program is one node (labelled like its printed line: ``v7 = matmul_add`` and the
shape it makes); each input, parameter, constant and random draw is one node, styled as in
``draw_graph``; an edge goes from the call (or leaf) that makes a buffer to every call that reads it,
and a dashed edge from an input to a call whose attribute (an index array) is a view of that input's
buffer. Calls made inside an RNN's time step sit in that step's cluster, as in ``draw_graph``.
"""
from __future__ import annotations

from collections import Counter

import graphviz
import numpy as np

from micrornn.engine.compile import Compiled
from micrornn.engine.program import Derived, Program, arrays_in
from micrornn.viz.graph import (EDGE_ATTR, GRAPH_ATTR, INPUT_STYLE, LARGE, NEWLINE, NODE_ATTR, PARAM_EDGE, PARAM_STYLE,
                                _chain_steps, _cluster_key, _emit_clusters)

LEAF_TEXT = {"input": "input", "param": "param", "const": "const", "random": "random (drawn each call)"}
NO_GRAD_STYLE = {"color": "#999999", "fontcolor": "#666666"}


def program_of(compiled, args=(), kwargs=None) -> Program:
    """The Program to draw: a Program as it is, or a compiled function's program for ``args`` (the only
    one it has traced when no arguments are given)."""
    if isinstance(compiled, Program):
        return compiled
    if not isinstance(compiled, Compiled):
        raise TypeError(f"draw_program: expected a micrornn.compile(...) function or a Program, got "
                        f"{type(compiled).__name__}")
    if args or kwargs:
        return compiled.program(*args, **(kwargs or {}))
    if len(compiled.programs) != 1:
        raise ValueError(f"draw_program: {compiled.__name__} has {len(compiled.programs)} programs (one per input "
                         "signature); pass the call's arguments to choose one: draw_program(fn, x, y)")
    return next(iter(compiled.programs.values()))


def draw_program(compiled, *args, rankdir: str = "TB", title: str | None = None, **kwargs) -> graphviz.Digraph:
    """Draw a compiled program: one node per primitive call and per input, parameter, constant and draw.

    ``compiled``: a ``micrornn.compile(fn)`` function (with the arguments of a call to pick its program;
    none when it has traced one signature) or a ``Program``. Returned values are drawn with a double
    border, calls that no gradient flows through in grey."""
    program = program_of(compiled, args, kwargs)
    returned = {id(v) for v in program.outputs}
    clusters: dict = {}
    firsts: dict = {}
    leaves = program.inputs + program.params + program.consts + program.randoms
    for v in leaves:
        attrs = dict(PARAM_STYLE if v.kind == "param" else INPUT_STYLE)
        name = f" {v.name}" if v.name and v.kind in ("param", "input") else ""
        label = f"{v.label} = {LEAF_TEXT[v.kind]}{name}{NEWLINE}{v.type_text()}"
        if id(v) in returned:
            attrs["peripheries"] = "2"
        clusters.setdefault(_cluster_key(v.scope) if v.kind == "random" else None, []).append((v.label, label, attrs))
    for number, call in enumerate(program.calls):
        out = call.output
        attrs = {"peripheries": "2"} if id(out) in returned else {}
        if call.needs is None and not isinstance(call.prim, Derived):
            attrs.update(NO_GRAD_STYLE)
        label = f"{out.label} = {call.prim.name}{NEWLINE}{out.type_text()}"
        key = _cluster_key(out.scope)
        clusters.setdefault(key, []).append((out.label, label, attrs))
        if key and key[0] == "step":
            firsts.setdefault(key, (number, out.label))

    edges: Counter = Counter()
    for call in program.calls:
        for v in call.inputs:
            edges[(v.label, call.output.label, v.kind == "param", None)] += 1
        for key, value in call.attrs.items():
            if key == "out":
                continue  # a destination the call writes, not something it reads
            for array in arrays_in(value):
                for v in program.inputs:
                    if np.may_share_memory(array, v.data):
                        edges[(v.label, call.output.label, False, key)] += 1

    graph_attr = dict(GRAPH_ATTR, rankdir=rankdir)
    if len(program.calls) + len(leaves) > LARGE:
        graph_attr["nslimit"] = "1"
    g = graphviz.Digraph("program", graph_attr=graph_attr, node_attr=NODE_ATTR, edge_attr=EDGE_ATTR)
    g.attr(label=title if title is not None else f"program {program.name}: {len(program.calls)} calls")
    _emit_clusters(g, clusters)
    _chain_steps(g, firsts)
    for (src, dst, from_param, attr), count in edges.items():
        attrs = dict(PARAM_EDGE) if from_param else {}
        if attr is not None:
            attrs.update(style="dashed", label=f"{attr}=")
        elif count > 1:
            attrs["label"] = f"×{count}"
        g.edge(src, dst, **attrs)
    return g
