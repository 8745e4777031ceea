"""Tests for micrornn.nn: Module/Parameter, Linear, Embedding, RNNCell, RNN, SequenceModel."""
import numpy as np
import pytest

import micrornn
from micrornn import Tensor, bptt
from micrornn.nn import functional as F
from micrornn.check.finite_differences import gradcheck
from micrornn.nn import RNN, Embedding, Linear, Module, Parameter, RNNCell, SequenceModel


def graph_nodes(root):
    """Every tensor reachable from root through parents (iterative), by id."""
    nodes, stack = {}, [root]
    while stack:
        node = stack.pop()
        if id(node) not in nodes:
            nodes[id(node)] = node
            stack.extend(node.parents)
    return nodes


# ----------------------------------------------------------------------------- Module

class Leafy(Module):
    def __init__(self, n):
        self.w = Parameter(np.full((n,), float(n)))
        self.not_a_param = Tensor(np.ones(2), requires_grad=True)  # a plain tensor is not discovered
        self.nothing = None
        self.number = 3


class Tree(Module):
    def __init__(self):
        self.first = Parameter(np.zeros(1))
        self.items = [Leafy(1), Leafy(2)]
        self.table = {"a": Leafy(3), "z": Leafy(4)}
        self.child = Leafy(5)
        self.last = Parameter(np.zeros(2))


def test_parameter_discovery_names_and_order():
    names = [n for n, _ in Tree().named_parameters()]
    # own parameters first (attribute order), then submodules depth-first in attribute order
    assert names == ["first", "last", "items.0.w", "items.1.w", "table.a.w", "table.z.w", "child.w"]


def test_parameters_matches_named_parameters():
    tree = Tree()
    assert [id(p) for p in tree.parameters()] == [id(p) for _, p in tree.named_parameters()]
    assert all(isinstance(p, Parameter) and p.requires_grad for p in tree.parameters())


def test_shared_parameter_and_module_appear_once():
    tree = Tree()
    tree.alias = tree.first          # the same Parameter under a second name
    tree.again = tree.items[0]       # the same module twice
    names = [n for n, _ in tree.named_parameters()]
    assert names.count("first") == 1 and "alias" not in names
    assert "items.0.w" in names and "again.w" not in names
    assert len(names) == len({id(p) for p in tree.parameters()}) == 7


def test_cyclic_module_reference_terminates():
    tree = Tree()
    tree.child.parent = tree  # a child holding its parent
    assert len(tree.named_parameters()) == 7


def test_rnn_parameter_names_follow_the_contract():
    model = SequenceModel(3, 4, 5, num_layers=2)
    assert [n for n, _ in model.named_parameters()] == [
        "rnn.cells.0.U", "rnn.cells.0.W", "rnn.cells.0.b", "rnn.cells.1.U", "rnn.cells.1.W", "rnn.cells.1.b",
        "head.weight", "head.bias"]
    assert model.rnn.cells[1].U.shape == (4, 4) and model.head.weight.shape == (5, 4)


def test_zero_grad_clears_every_gradient():
    model = SequenceModel(3, 4, 5)
    loss, _ = model.loss(np.ones((2, 1, 3)), np.zeros((2, 1), dtype=int))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_state_dict_returns_copies():
    model = SequenceModel(3, 4, 5)
    state = model.state_dict()
    assert list(state) == [n for n, _ in model.named_parameters()]
    before = model.head.bias.data.copy()
    state["head.bias"][:] = 123.0
    np.testing.assert_array_equal(model.head.bias.data, before)
    assert not np.shares_memory(state["rnn.cells.0.U"], model.rnn.cells[0].U.data)


def test_load_state_dict_round_trip_copies_in_place():
    a, b = SequenceModel(3, 4, 5, rng=1), SequenceModel(3, 4, 5, rng=2)
    U = b.rnn.cells[0].U
    state = a.state_dict()
    b.load_state_dict(state)
    assert b.rnn.cells[0].U is U  # same Parameter objects, new values
    for (_, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    state["head.bias"][:] = 7.0  # the source stays independent
    assert not np.any(b.head.bias.data == 7.0)


def test_load_state_dict_strict_names_every_problem_and_changes_nothing():
    model = SequenceModel(3, 4, 5, rng=0)
    before = model.state_dict()
    state = model.state_dict()
    del state["rnn.cells.0.W"]
    state["rnn.cells.9.U"] = np.zeros((4, 3))
    state["head.weight"] = np.zeros((4, 5))      # transposed: wrong shape
    state["rnn.cells.0.U"] = np.full((4, 3), 9.0)  # valid, but must not be loaded
    with pytest.raises(ValueError) as err:
        model.load_state_dict(state)
    message = str(err.value)
    assert "\n" not in message
    for name in ["rnn.cells.0.W", "rnn.cells.9.U", "head.weight"]:
        assert name in message
    assert "missing" in message and "unexpected" in message and "shape" in message
    assert "(4, 5)" in message and "(5, 4)" in message
    for name, p in model.named_parameters():
        np.testing.assert_array_equal(p.data, before[name], err_msg=name)


def test_load_state_dict_non_strict_loads_what_matches():
    model = SequenceModel(3, 4, 5, rng=0)
    before = model.state_dict()
    model.load_state_dict({"head.bias": np.arange(5.0), "extra": np.zeros(3)}, strict=False)
    np.testing.assert_array_equal(model.head.bias.data, np.arange(5.0))
    np.testing.assert_array_equal(model.head.weight.data, before["head.weight"])
    with pytest.raises(ValueError, match="head.weight"):  # shapes are still checked
        model.load_state_dict({"head.weight": np.zeros(3), "head.bias": np.zeros(5)}, strict=False)
    np.testing.assert_array_equal(model.head.bias.data, np.arange(5.0))


# ----------------------------------------------------------------------------- Linear, Embedding

def test_linear_shapes_and_values():
    lin = Linear(3, 2, rng=0)
    assert lin.weight.shape == (2, 3) and lin.bias.shape == (2,)
    x = np.random.default_rng(0).standard_normal((4, 5, 3))
    y = lin(Tensor(x))
    assert y.shape == (4, 5, 2)
    np.testing.assert_allclose(y.data, x @ lin.weight.data.T + lin.bias.data, rtol=1e-14, atol=1e-15)
    no_bias = Linear(3, 2, bias=False)
    assert no_bias.bias is None and [n for n, _ in no_bias.named_parameters()] == ["weight"]
    with pytest.raises(ValueError, match="3"):
        lin(Tensor(np.ones((4, 2))))


def test_linear_gradients():
    lin = Linear(3, 2, rng=0)
    x = Tensor(np.random.default_rng(1).standard_normal((4, 3)), requires_grad=True)
    assert gradcheck(lambda x, w, b: x @ w.T + b, [x, lin.weight, lin.bias])
    assert gradcheck(lambda x, *_: lin(x), [x, lin.weight, lin.bias])


def test_embedding_lookup_and_scatter_add_gradient():
    emb = Embedding(5, 3, rng=0)
    idx = np.array([[0, 2], [2, 4]])
    out = emb(idx)
    assert out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out.data, emb.weight.data[idx])
    assert gradcheck(lambda w: emb(idx) * 1.0, [emb.weight])
    emb.zero_grad()
    emb(idx).sum().backward()
    np.testing.assert_array_equal(emb.weight.grad[:, 0], [1, 0, 2, 0, 1])  # row 2 used twice
    with pytest.raises(TypeError, match="integers"):
        emb(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="0..4"):
        emb(np.array([5]))


# ----------------------------------------------------------------------------- RNNCell

@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_cell_forward_matches_formula(nonlinearity):
    cell = RNNCell(3, 4, nonlinearity=nonlinearity, rng=0)
    assert cell.U.shape == (4, 3) and cell.W.shape == (4, 4) and cell.b.shape == (4,)
    rng = np.random.default_rng(1)
    x, h = rng.standard_normal((2, 3)), rng.standard_normal((2, 4))
    pre = x @ cell.U.data.T + h @ cell.W.data.T + cell.b.data
    expected = np.tanh(pre) if nonlinearity == "tanh" else np.maximum(pre, 0)
    out = cell(Tensor(x), Tensor(h))
    assert out.shape == (2, 4)
    np.testing.assert_allclose(out.data, expected, rtol=1e-14, atol=1e-15)


def test_rnn_cell_without_bias():
    cell = RNNCell(3, 4, bias=False, rng=0)
    assert cell.b is None and [n for n, _ in cell.named_parameters()] == ["U", "W"]
    x, h = np.ones((1, 3)), np.ones((1, 4))
    np.testing.assert_allclose(cell(x, h).data, np.tanh(x @ cell.U.data.T + h @ cell.W.data.T), atol=1e-15)


def test_init_is_uniform_within_one_over_sqrt_hidden():
    H = 400
    model = SequenceModel(30, H, 7, num_layers=2, rng=0)
    bound = 1 / np.sqrt(H)
    for name, p in model.named_parameters():
        assert np.abs(p.data).max() <= bound, name
        if p.size >= 400:  # spread over the whole interval, roughly uniform
            assert np.abs(p.data).max() > 0.95 * bound, name
            assert abs(np.mean(np.abs(p.data)) - bound / 2) < 0.05 * bound, name


def test_init_reproducible_via_manual_seed_and_rng():
    micrornn.manual_seed(123)
    a = SequenceModel(3, 4, 5, num_layers=2)
    micrornn.manual_seed(123)
    b = SequenceModel(3, 4, 5, num_layers=2)
    c = SequenceModel(3, 4, 5, num_layers=2)  # the generator moved on
    d, e = SequenceModel(3, 4, 5, num_layers=2, rng=9), SequenceModel(3, 4, 5, num_layers=2, rng=9)
    f = SequenceModel(3, 4, 5, num_layers=2, rng=np.random.default_rng(9))
    for name in a.state_dict():
        np.testing.assert_array_equal(a.state_dict()[name], b.state_dict()[name])
        np.testing.assert_array_equal(d.state_dict()[name], e.state_dict()[name])
        np.testing.assert_array_equal(d.state_dict()[name], f.state_dict()[name])
        assert not np.array_equal(a.state_dict()[name], c.state_dict()[name])
        assert not np.array_equal(a.state_dict()[name], d.state_dict()[name])
    cell_a, cell_b = RNNCell(2, 3, rng=4), RNNCell(2, 3, rng=4)
    np.testing.assert_array_equal(cell_a.W.data, cell_b.W.data)


def test_concatenated_form_equals_split_form_outputs_and_gradients():
    cell = RNNCell(3, 4, rng=0)
    rng = np.random.default_rng(2)
    xs, hs = rng.standard_normal((5, 3)), rng.standard_normal((5, 4))
    UW = cell.concatenated_weight()
    assert UW.shape == (4, 7)
    np.testing.assert_array_equal(UW.data, np.hstack([cell.U.data, cell.W.data]))

    results = []
    for step in (cell.forward, cell.forward_concatenated):
        cell.zero_grad()
        x, h = Tensor(xs, requires_grad=True), Tensor(hs, requires_grad=True)
        out = step(x, h)
        (out * out).sum().backward()  # a non-trivial upstream gradient
        results.append([out.data, x.grad, h.grad, cell.U.grad, cell.W.grad, cell.b.grad])
    for name, split, joined in zip("out dx dh dU dW db".split(), *results):
        np.testing.assert_allclose(joined, split, rtol=1e-14, atol=1e-15, err_msg=name)


# ----------------------------------------------------------------------------- RNN

def test_rnn_shapes_and_layer_stacking():
    rnn = RNN(3, 4, num_layers=3, rng=0)
    x = np.random.default_rng(0).standard_normal((6, 2, 3))
    out, h_n = rnn(Tensor(x))
    assert out.shape == (6, 2, 4) and h_n.shape == (3, 2, 4)
    np.testing.assert_array_equal(h_n.data[-1], out.data[-1])
    # layer l's output sequence is layer l+1's input
    inp = x
    for l, cell in enumerate(rnn.cells):
        states = bptt.rnn_layer_forward(inp, cell.U.data, cell.W.data, cell.b.data, None)
        np.testing.assert_allclose(h_n.data[l], states[-1], rtol=1e-13, atol=1e-15)
        inp = states
    np.testing.assert_allclose(out.data, inp, rtol=1e-13, atol=1e-15)
    assert [c.U.shape for c in rnn.cells] == [(4, 3), (4, 4), (4, 4)]


@pytest.mark.parametrize("fused", [False, True])
def test_batch_first_is_the_transposed_layout(fused):
    rng = np.random.default_rng(0)
    x, h0 = rng.standard_normal((5, 2, 3)), rng.standard_normal((2, 2, 4))
    tm = RNN(3, 4, num_layers=2, fused=fused, rng=1)
    bf = RNN(3, 4, num_layers=2, fused=fused, batch_first=True, rng=1)
    out_tm, hn_tm = tm(x, h0)
    out_bf, hn_bf = bf(x.transpose(1, 0, 2), h0)
    assert out_bf.shape == (2, 5, 4) and hn_bf.shape == (2, 2, 4)  # h_n stays (layers, B, H)
    np.testing.assert_array_equal(out_bf.data, out_tm.data.transpose(1, 0, 2))
    np.testing.assert_array_equal(hn_bf.data, hn_tm.data)


@pytest.mark.parametrize("fused", [False, True])
def test_h0_is_used_and_zeros_equal_none(fused):
    rnn = RNN(3, 4, num_layers=2, fused=fused, rng=0)
    x = np.random.default_rng(0).standard_normal((3, 2, 3))
    out_none, _ = rnn(x)
    out_zero, _ = rnn(x, np.zeros((2, 2, 4)))
    out_h0, _ = rnn(x, np.full((2, 2, 4), 0.5))
    np.testing.assert_allclose(out_zero.data, out_none.data, rtol=0, atol=1e-15)
    assert np.abs(out_h0.data - out_none.data).max() > 1e-3
    first = np.tanh(x[0] @ rnn.cells[0].U.data.T + 0.5 * rnn.cells[0].W.data.sum(axis=1) + rnn.cells[0].b.data)
    h_l0, _ = RNN(3, 4, fused=fused, rng=0)(x, np.full((1, 2, 4), 0.5))  # same first layer weights
    np.testing.assert_allclose(h_l0.data[0], first, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("fused", [False, True])
def test_integer_inputs_equal_one_hot_inputs(fused):
    idx = np.random.default_rng(0).integers(0, 6, size=(5, 3))
    results = []
    for x in (Tensor(idx), Tensor(np.eye(6)[idx])):
        model = SequenceModel(6, 4, 5, num_layers=2, fused=fused, rng=3)
        loss, h_n = model.loss(x, idx[:, ::-1] % 5)
        loss.backward()
        results.append([loss.data, h_n.data] + [p.grad for p in model.parameters()])
    for k, (a, b) in enumerate(zip(*results)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15, err_msg=f"item {k}")


def test_integer_inputs_out_of_range_or_wrong_rank():
    rnn = RNN(4, 3)
    with pytest.raises(ValueError, match="0..3"):
        rnn(np.array([[0, 4]]))
    with pytest.raises(ValueError, match=r"\(T, B\)"):
        rnn(np.zeros((2, 2, 4), dtype=int))


def test_truncated_bptt_detached_state_cuts_the_graph():
    model = SequenceModel(3, 4, 5, num_layers=2, rng=0)
    rng = np.random.default_rng(1)
    x1 = Tensor(rng.standard_normal((4, 2, 3)), requires_grad=True)
    x2 = rng.standard_normal((4, 2, 3))
    y1, y2 = rng.integers(0, 5, (4, 2)), rng.integers(0, 5, (4, 2))

    loss1, h_n = model.loss(x1, y1)
    chunk1 = {i for i, n in graph_nodes(loss1).items() if not n.is_leaf or n is x1}
    loss1.backward()
    model.zero_grad()

    h0 = h_n.detach()
    assert h0.is_leaf and not h0.requires_grad
    np.testing.assert_array_equal(h0.data, h_n.data)
    loss2, _ = model.loss(x2, y2, h0)
    chunk2 = graph_nodes(loss2)
    assert not chunk1 & set(chunk2), "chunk 2's graph contains nodes of chunk 1"
    assert id(h_n) not in chunk2
    loss2.backward()
    assert x1.grad is not None  # from loss1 only
    x1_grad = x1.grad.copy()
    # chunk 2's gradients are exactly those of a fresh run from the constant state h_n
    _, expected = bptt.loss_and_grads(model, x2, y2, h0=h_n.data)
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, expected[name], rtol=1e-12, atol=1e-14, err_msg=name)
    np.testing.assert_array_equal(x1.grad, x1_grad)  # nothing flowed back into chunk 1


def test_without_detach_gradients_do_reach_the_previous_chunk():
    """The control for the test above: an undetached h_n carries chunk 2's gradient into chunk 1."""
    model = SequenceModel(3, 4, 5, rng=0)
    rng = np.random.default_rng(1)
    x1 = Tensor(rng.standard_normal((4, 2, 3)), requires_grad=True)
    _, h_n = model.loss(x1, rng.integers(0, 5, (4, 2)))
    loss2, _ = model.loss(rng.standard_normal((4, 2, 3)), rng.integers(0, 5, (4, 2)), h_n)
    loss2.backward()
    assert x1.grad is not None and np.abs(x1.grad).max() > 0


# ----------------------------------------------------------------------------- validation

@pytest.mark.parametrize("build, argument", [
    (lambda: RNN(0, 4), "input_size"),
    (lambda: RNN(3, -1), "hidden_size"),
    (lambda: RNN(3, 4, num_layers=0), "num_layers"),
    (lambda: RNN(3, 4, nonlinearity="sigmoid"), "nonlinearity"),
    (lambda: RNNCell(3, 0), "hidden_size"),
    (lambda: RNNCell(3, 4, nonlinearity="gelu"), "nonlinearity"),
    (lambda: SequenceModel(3, 4, 0), "output_size"),
    (lambda: SequenceModel(-2, 4, 5), "input_size"),
    (lambda: SequenceModel(3, 4, 5, num_layers=-1), "num_layers"),
    (lambda: Linear(0, 3), "in_features"),
    (lambda: Embedding(4, 0), "embedding_dim"),
])
def test_bad_constructor_arguments_name_the_argument(build, argument):
    with pytest.raises(ValueError, match=argument):
        build()


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("x_shape, h0_shape, pattern", [
    ((5, 2), None, r"input.*\(5, 2\)"),                        # float input of rank 2
    ((5, 2, 3, 1), None, r"input.*\(5, 2, 3, 1\)"),            # rank 4
    ((5, 2, 4), None, r"input_size=3.*\(5, 2, 4\)"),           # wrong input size
    ((5, 2, 3), (2, 4), r"h0.*\(2, 2, 4\).*\(2, 4\)"),          # h0 of wrong rank
    ((5, 2, 3), (2, 2, 5), r"h0.*\(2, 2, 4\).*\(2, 2, 5\)"),    # wrong hidden size
    ((5, 2, 3), (3, 2, 4), r"h0.*\(2, 2, 4\).*\(3, 2, 4\)"),    # wrong number of layers
])
def test_bad_rnn_inputs_name_the_argument(batch_first, x_shape, h0_shape, pattern):
    rnn = RNN(3, 4, num_layers=2, batch_first=batch_first)
    h0 = None if h0_shape is None else np.zeros(h0_shape)
    if batch_first:  # the same batch of 2, laid out (B, T, ...)
        x_shape = (x_shape[1], x_shape[0]) + x_shape[2:]
        pattern = pattern.replace(r"\(5, 2", r"\(2, 5")
    with pytest.raises(ValueError, match=pattern):
        rnn(np.zeros(x_shape), h0)


@pytest.mark.parametrize("batch_first", [False, True])
def test_h0_batch_must_match_x(batch_first):
    rnn = RNN(3, 4, num_layers=2, batch_first=batch_first)
    x = np.zeros((2, 5, 3)) if batch_first else np.zeros((5, 2, 3))  # batch 2 either way
    with pytest.raises(ValueError, match=r"h0.*\(2, 2, 4\).*\(2, 3, 4\)"):
        rnn(x, np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="empty"):
        rnn(np.zeros((0, 2, 3)))


def test_bad_cell_inputs_name_the_argument():
    cell = RNNCell(3, 4)
    with pytest.raises(ValueError, match=r"x.*\(\*, 3\).*\(2, 5\)"):
        cell(np.zeros((2, 5)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"h.*\(2, 4\).*\(3, 4\)"):
        cell(np.zeros((2, 3)), np.zeros((3, 4)))  # mismatched batch
    with pytest.raises(ValueError, match=r"h.*\(2, 4\).*\(2, 5\)"):
        cell(np.zeros((2, 3)), np.zeros((2, 5)))


def test_sequence_model_loss_and_config():
    model = SequenceModel(3, 4, 5, num_layers=2, nonlinearity="relu", rng=0)
    x, y = np.random.default_rng(0).standard_normal((6, 2, 3)), np.zeros((6, 2), dtype=int)
    logits, h_n = model(x)
    assert logits.shape == (6, 2, 5) and h_n.shape == (2, 2, 4)
    total, _ = model.loss(x, y)
    mean, _ = model.loss(x, y, reduction="mean")
    ref, _ = bptt.loss_and_grads(model, x, y)
    assert abs(total.item() - ref) <= 1e-12 * ref and abs(mean.item() - ref / 12) <= 1e-12 * ref
    np.testing.assert_allclose(F.cross_entropy(logits, y, reduction="sum").data, total.data, rtol=1e-15)
    twin = SequenceModel(**{k: v for k, v in model.config.items() if k != "dtype"})
    assert [p.shape for p in twin.parameters()] == [p.shape for p in model.parameters()]
    assert model.config["nonlinearity"] == "relu" and model.config["num_layers"] == 2
