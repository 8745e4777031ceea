"""viz.draw_program: one node per primitive call and per leaf buffer, edges along the buffers, steps clustered."""
import re

import numpy as np
import pytest

import micrornn as mr
from micrornn import nn
from micrornn.bench.mgu import MGU
from micrornn.viz import draw_program

NODE = re.compile(r"^\s*(\w+) \[label=", re.M)
EDGE = re.compile(r"^\s*(\w+) -> (\w+)(?: \[(.*)\])?$", re.M)


def compiled_loss(cell="rnn", T=3):
    model = nn.SequenceModel(4, 3, 4, rng=0, cell=cell)
    fn = mr.compile(lambda x, y: model.loss(x, y)[0])
    x = np.random.default_rng(0).integers(0, 4, (T, 2))
    fn(x, x)
    return fn, fn.program(x, x)


def drawn_edges(source):
    return {(a, b) for a, b, attrs in EDGE.findall(source) if "invis" not in (attrs or "")}


@pytest.mark.parametrize("cell", ["rnn", "lstm", lambda i, h: MGU(i, h, rng=0)])
def test_one_node_per_call_and_per_leaf_buffer(cell):
    fn, program = compiled_loss(cell)
    source = draw_program(fn).source
    nodes = NODE.findall(source)
    leaves = program.inputs + program.params + program.consts + program.randoms
    assert len(nodes) == len(set(nodes)) == len(program.calls) + len(leaves)
    assert {n for n in nodes if n.startswith("v")} == {c.output.label for c in program.calls}
    assert f"{len(program.calls)} calls" in source


def test_edges_follow_the_buffers():
    fn, program = compiled_loss()
    expected = {(v.label, c.output.label) for c in program.calls for v in c.inputs}
    edges = drawn_edges(draw_program(fn).source)
    assert expected <= edges
    extra = edges - expected  # only the dashed edges from inputs whose buffers an index attribute reads
    assert extra and all(src in ("a0", "a1") for src, _ in extra)
    assert all('style=dashed' in attrs for a, b, attrs in EDGE.findall(draw_program(fn).source) if (a, b) in extra)


def test_calls_of_a_time_step_sit_in_its_cluster_and_outputs_are_marked():
    fn, program = compiled_loss(T=4)
    source = draw_program(fn).source
    for t in range(1, 5):
        assert f"subgraph cluster_l0_t{t} {{" in source
    body = source.split("subgraph cluster_l0_t2 {", 1)[1].split("}", 1)[0]
    tanh = [c.output.label for c in program.calls if c.prim.name == "tanh"]
    assert f"{tanh[1]} [label=" in body and f"{tanh[0]} [label=" not in body
    out = program.outputs[0].label
    assert [line for line in source.splitlines() if line.strip().startswith(f"{out} [label=") and "peripheries=2" in line]
    assert not [line for line in source.splitlines() if "peripheries=2" in line and f"{out} [label=" not in line]
    assert "param rnn.cells.0.W" in source and "param head.weight" in source


def test_which_program_to_draw():
    fn, program = compiled_loss()
    y = np.zeros((5, 2), int)
    fn(y, y)  # a second signature
    with pytest.raises(ValueError, match="2 programs"):
        draw_program(fn)
    assert "v0 = " in draw_program(fn, y, y).source
    assert draw_program(program).source == draw_program(fn, np.zeros((3, 2), int), np.zeros((3, 2), int)).source
    with pytest.raises(TypeError, match="draw_program"):
        draw_program(lambda x: x)
