"""micrornn.compile: traced programs give the uncompiled values and gradients, retrace on a new
signature, refuse value-dependent control flow, draw dropout masks on every call, print as text."""
import numpy as np
import pytest

import micrornn as mr
from micrornn import nn
from micrornn.engine.compile import ValueDependentError
from micrornn.nn import functional as F

from user_cells import MGU


def _grads(module):
    return {name: p.grad.copy() for name, p in module.named_parameters()}


def _step(fn, module, *args):
    module.zero_grad()
    out = fn(*args)
    loss = out[0] if isinstance(out, tuple) else out
    loss.backward()
    return loss.item(), _grads(module)


def _batches(seed, T=6, B=3, classes=11, n=3):
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, classes, (T, B)), rng.integers(0, classes, (T, B))) for _ in range(n)]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, True)])
def test_compiled_sequence_model_equals_uncompiled_bit_for_bit(cell, layers, bidirectional):
    model = nn.SequenceModel(11, 8, 11, num_layers=layers, cell=cell, bidirectional=bidirectional, rng=0)

    def loss(x, y):
        return model.loss(x, y, reduction="sum")[0]
    compiled = mr.compile(loss)
    for x, y in _batches(1):  # new values every call: the first traces, the others replay
        ref_loss, ref = _step(loss, model, x, y)
        got_loss, got = _step(compiled, model, x, y)
        assert got_loss == ref_loss
        for name in ref:
            np.testing.assert_array_equal(got[name], ref[name], err_msg=name)
    assert len(compiled.programs) == 1


def test_float32_and_parameter_updates_between_calls():
    model = nn.SequenceModel(11, 8, 11, cell="gru", dtype=np.float32, rng=3)
    compiled = mr.compile(lambda x, y: model.loss(x, y)[0])
    opt = mr.optim.SGD(model.parameters(), lr=0.5)
    for x, y in _batches(2):
        ref_loss, ref = _step(lambda a, b: model.loss(a, b)[0], model, x, y)
        got_loss, got = _step(compiled, model, x, y)
        assert got_loss == ref_loss
        for name in ref:
            assert got[name].dtype == np.float32
            np.testing.assert_array_equal(got[name], ref[name])
        opt.step()  # the program reads the parameters' new values on the next call


def test_user_cell_through_recurrent_with_input_gradient():
    rec = nn.Recurrent(MGU(4, 5))

    def loss(x, target):
        out, h = rec(x)
        return ((out - target) ** 2).sum() + h.sum(), h
    compiled = mr.compile(loss)
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = mr.Tensor(rng.normal(size=(7, 2, 4)), requires_grad=True)
        target = rng.normal(size=(7, 2, 5))
        rec.zero_grad()
        (ref, ref_h) = loss(x, target)
        ref.backward()
        ref_grads, ref_x = _grads(rec), x.grad.copy()
        x.grad = None
        rec.zero_grad()
        got, got_h = compiled(x, target)
        got.backward()
        assert got.item() == ref.item()
        np.testing.assert_array_equal(got_h.data, ref_h.data)
        np.testing.assert_array_equal(x.grad, ref_x)
        for name in ref_grads:
            np.testing.assert_array_equal(rec.cell.__dict__[name.split(".")[-1]].grad, ref_grads[name])
    program = compiled.program(x, target)
    assert {v.name for v in program.params} == {"cell.U", "cell.W_f", "cell.W_n"}


def test_dropout_masks_are_drawn_on_every_call():
    model = nn.SequenceModel(11, 8, 11, num_layers=2, cell="lstm", dropout=0.5, rng=0)

    def loss(x, y):
        return model.loss(x, y, reduction="sum")[0]
    compiled = mr.compile(loss)
    (x, y), = _batches(4, n=1)
    losses = []
    for seed in (10, 11, 12):  # the same seed gives the same masks on either path, every call
        mr.manual_seed(seed)
        ref_loss, ref = _step(loss, model, x, y)
        mr.manual_seed(seed)
        got_loss, got = _step(compiled, model, x, y)
        assert got_loss == ref_loss
        for name in ref:
            np.testing.assert_array_equal(got[name], ref[name])
        losses.append(got_loss)
    assert len(set(losses)) == 3  # fresh masks: a baked mask would give one loss for the same batch
    assert "random" in str(compiled.program(x, y))
    model.eval()  # a module's mode keys the program: evaluation traces again, without dropout
    ev = compiled(x, y).item()
    assert ev == loss(x, y).item() and len(compiled.programs) == 2


def test_new_signature_retraces_and_static_arguments_key_the_program():
    w = mr.Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    compiled = mr.compile(lambda x, scale: ((x @ w) * scale).sum())
    compiled(np.ones((4, 2)), 2.0)
    compiled(np.ones((4, 2)), 2.0)
    assert len(compiled.programs) == 1
    assert compiled(np.ones((5, 2)), 2.0).item() == 5 * 2.0 * w.data.sum()
    assert compiled(np.ones((5, 2)), 3.0).item() == 5 * 3.0 * w.data.sum()
    assert compiled(np.ones((5, 2), dtype=np.float32).astype(np.float64) * 2, 3.0).item() == 10 * 3.0 * w.data.sum()
    assert len(compiled.programs) == 3
    with pytest.raises(TypeError, match="hashable"):
        compiled(np.ones((4, 2)), {1.0})


def test_comparisons_are_replayed_not_baked():
    compiled = mr.compile(lambda x: mr.where(x > 0, x, x * 0.1).sum())
    for data in (np.array([1.0, -2.0, 3.0]), np.array([-1.0, 2.0, -3.0])):
        x = mr.Tensor(data, requires_grad=True)
        out = compiled(x)
        out.backward()
        np.testing.assert_array_equal(x.grad, np.where(data > 0, 1.0, 0.1))
        assert out.item() == np.where(data > 0, data, data * 0.1).sum()


@pytest.mark.parametrize("read", [lambda t: float(t.sum()), lambda t: bool((t > 0).all()),
                                  lambda t: t.sum().item(), lambda t: 1 if t.max() > 0 else 0])
def test_value_dependent_control_flow_is_refused(read):
    compiled = mr.compile(lambda x: x * read(x))
    with pytest.raises(ValueDependentError, match="static"):
        compiled(mr.Tensor(np.ones(3), requires_grad=True))


def test_program_prints_one_line_per_primitive():
    cell = nn.RNNCell(3, 4, rng=0)
    compiled = mr.compile(lambda x, h: cell(x, h).sum())
    program = compiled.program(np.ones((2, 3)), np.zeros((2, 4)))
    text = str(program)
    call_lines = [line for line in text.splitlines() if " = " in line and "(" in line.split(" = ", 1)[1]]
    assert len(call_lines) == len(program.calls)
    assert "matmul_add" in text and "tanh" in text and "param U" in text and text.splitlines()[-1].startswith("  return")


def test_higher_order_and_jvp_stay_uncompiled_and_say_so():
    w = mr.Tensor(np.array([0.5, -1.0]), requires_grad=True)
    compiled = mr.compile(lambda x: (x * w).tanh().sum())
    out = compiled(np.ones(2))
    with pytest.raises(NotImplementedError, match="uncompiled"):
        mr.grad(out, [w], create_graph=True)
    with pytest.raises(NotImplementedError, match="uncompiled"):
        mr.jvp(lambda v: compiled(v), [mr.Tensor(np.ones(2))], [np.ones(2)])


def test_a_result_goes_stale_when_the_next_call_reuses_the_buffers():
    model = nn.SequenceModel(5, 4, 5, rng=0)
    compiled = mr.compile(lambda x, y: model.loss(x, y)[0])
    (x1, y1), (x2, y2) = _batches(5, classes=5, n=2)
    first = compiled(x1, y1)
    compiled(x2, y2)
    with pytest.raises(RuntimeError, match="before the next call"):
        first.backward()


def test_returned_states_are_not_overwritten_by_the_next_call():
    model = nn.SequenceModel(5, 4, 5, rng=0)
    compiled = mr.compile(lambda x: model(x))
    (x1, _), (x2, _) = _batches(6, classes=5, n=2)
    logits1, h1 = compiled(x1)
    kept = h1.data.copy()
    compiled(x2)
    np.testing.assert_array_equal(h1.data, kept)
    np.testing.assert_array_equal(kept, model(x1)[1].data)


def test_an_array_argument_returned_unchanged_is_a_copy():
    compiled = mr.compile(lambda x, w: ((x * w).sum(), x))
    w = mr.Tensor(np.ones(2), requires_grad=True)
    first = compiled(np.array([1.0, 2.0]), w)[1]
    compiled(np.array([5.0, 6.0]), w)
    np.testing.assert_array_equal(first.data, [1.0, 2.0])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_truncated_bptt_loop_carries_the_state_through_the_program(cell):
    model = nn.SequenceModel(7, 5, 7, cell=cell, dropout=0.0, rng=2)
    compiled = mr.compile(lambda x, y, h0: model.loss(x, y, h0, reduction="mean"))
    states = {"ref": None, "got": None}
    for x, y in _batches(8, T=4, B=2, classes=7, n=4):
        results = {}
        for route, fn in (("ref", lambda *a: model.loss(*a, reduction="mean")), ("got", compiled)):
            model.zero_grad()
            loss, h_n = fn(x, y, states[route])
            loss.backward()
            results[route] = (loss.item(), _grads(model))
            states[route] = nn.recurrent.detach_state_tensors(h_n)  # as the trainer does between chunks
        assert results["got"][0] == results["ref"][0]
        for name, g in results["ref"][1].items():
            np.testing.assert_array_equal(results["got"][1][name], g)
    assert len(compiled.programs) == 2  # no state on the first chunk, a state afterwards


def test_values_computed_from_inputs_outside_the_engine_are_refused():
    w = mr.Tensor(np.arange(15.0).reshape(5, 3), requires_grad=True)
    one_hot = mr.compile(lambda idx: (F.one_hot(idx, 5) @ w).sum())  # NumPy on the indices: a constant
    with pytest.raises(ValueDependentError, match="changed with the input values"):
        one_hot(np.array([0, 1, 4]))
    mask_of = lambda x, lengths: (x * mr.Tensor((np.arange(4)[:, None] < np.asarray(lengths)) * 1.0)).sum()  # noqa: E731
    with pytest.raises(ValueDependentError, match="constant"):
        mr.compile(mask_of)(mr.Tensor(np.ones((4, 2)), requires_grad=True), np.array([1, 3]))
    static = mr.compile(mask_of, static_argnums=(1,))  # a static argument's values key the program instead
    for lengths in (np.array([1, 3]), np.array([4, 2]), np.array([1, 3])):
        assert static(mr.Tensor(np.ones((4, 2))), lengths).item() == lengths.sum()
    assert len(static.programs) == 2
    gathered = mr.compile(lambda idx: w[idx].sum())  # the index is the input itself: fine
    for idx in (np.array([0, 1, 4]), np.array([2, 2, 3])):
        assert gathered(idx).item() == w.data[idx].sum()


def test_no_grad_calls_get_their_own_program_without_a_graph():
    w = mr.Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    compiled = mr.compile(lambda x: (x * w).sum())
    with mr.no_grad():
        out = compiled(np.ones(3))
    assert not out.requires_grad and out.item() == 6.0
    out = compiled(np.ones(3))
    assert out.requires_grad and len(compiled.programs) == 2
    out.backward()
    np.testing.assert_array_equal(w.grad, np.ones(3))


@pytest.mark.parametrize("cell,layers,dropout", [("lstm", 1, 0.0), ("gru", 2, 0.3)])
def test_trainer_compiles_the_unrolled_step_with_the_same_numbers(cell, layers, dropout):
    from micrornn.engine.compile import Compiled
    from micrornn.train import TrainConfig, Trainer
    text = "the quick brown fox jumps over the lazy dog; " * 12
    runs = {}
    for compiled in (True, False):
        config = TrainConfig(cell=cell, hidden_size=8, num_layers=layers, dropout=dropout, seq_len=6, batch_size=3,
                             steps=6, fused=False, compile=compiled, dtype="float64", val_every=0, sample_every=0,
                             warmup=0)
        trainer = Trainer(text, config)
        losses = [trainer.train_step() for _ in range(6)]
        assert isinstance(trainer.compiled_loss, Compiled) == compiled
        runs[compiled] = (losses, {n: p.data.copy() for n, p in trainer.model.named_parameters()})
    assert runs[True][0] == runs[False][0]
    for name, value in runs[False][1].items():
        np.testing.assert_array_equal(runs[True][1][name], value)


def test_non_contiguous_index_inputs_are_refilled_on_every_call():
    model = nn.SequenceModel(7, 4, 7, rng=0)
    compiled = mr.compile(lambda x, y: model.loss(x, y, reduction="sum")[0])
    for x, y in _batches(9, T=5, B=3, classes=7):
        x, y = np.asfortranarray(x), y.T.copy().T  # column-major, as a transposed data window is
        assert compiled(x, y).item() == model.loss(x, y, reduction="sum")[0].item()


@pytest.mark.parametrize("cell,fused", [("rnn", False), ("rnn", True), ("lstm", False), ("lstm", True),
                                        ("gru", False), ("gru", True), ("user", False)])
@pytest.mark.parametrize("reduction,bidirectional", [("sum", False), ("mean", False), ("sum", True)])
def test_lengths_as_a_static_argument_give_the_uncompiled_gradients(cell, fused, reduction, bidirectional):
    kind = MGU if cell == "user" else cell
    model = nn.SequenceModel(7, 5, 7, cell=kind, rng=1, bidirectional=bidirectional,
                             **({"fused": fused} if cell != "user" else {}))

    def loss(x, y, lengths):
        return model.loss(x, y, reduction=reduction, lengths=lengths)[0]
    for compiled in (mr.compile(loss, static_argnums=(2,)), mr.compile(loss, static_argnames=("lengths",))):
        rng = np.random.default_rng(5)
        for lengths in ([6, 4, 2], [3, 6, 5], [6, 4, 2]):
            x, y = rng.integers(0, 7, (6, 3)), rng.integers(0, 7, (6, 3))
            y[np.arange(6)[:, None] >= np.array(lengths)] = 99  # padding may hold anything
            results = []
            for fn in (loss, compiled):
                model.zero_grad()
                out = fn(x, y, np.array(lengths))
                out.backward()
                results.append((out.item(), _grads(model)))
            assert abs(results[1][0] - results[0][0]) <= 1e-12 * abs(results[0][0])
            for name, g in results[0][1].items():
                np.testing.assert_allclose(results[1][1][name], g, rtol=1e-12, atol=1e-12, err_msg=name)
        assert len(compiled.programs) == 2  # one per distinct lengths


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_fused_layers_compile_with_index_inputs(cell):
    model = nn.SequenceModel(7, 5, 7, cell=cell, fused=True, rng=1)
    compiled = mr.compile(lambda x, y: model.loss(x, y, reduction="sum")[0])
    for x, y in _batches(9, T=6, B=3, classes=7, n=2):
        got, ref = _step(compiled, model, x, y), _step(lambda *a: model.loss(*a, reduction="sum")[0], model, x, y)
        assert got[0] == ref[0]


def test_the_program_lets_go_of_intermediate_arrays_after_each_forward():
    import tracemalloc
    w = mr.Tensor(np.full(100_000, 0.5), requires_grad=True)  # 0.8 MB per array

    def chain(x):
        for _ in range(20):
            x = (x * w).tanh()
        return x.sum()
    fn = mr.compile(chain)
    x = np.ones(100_000)
    fn(x).backward()  # the trace
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        loss = fn(x)
        loss.backward()
        value = loss.item()
        del loss
        w.grad = None
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert value == pytest.approx(chain(mr.Tensor(x)).item(), rel=1e-12)
    assert kept < 2 * x.nbytes  # 40 intermediate arrays (32 MB) were kept until the next call before
