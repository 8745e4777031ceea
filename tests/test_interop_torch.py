"""to_torch: a micrornn module as a torch module generated from its traced program, with the same
parameter names and equal outputs and gradients; torch_code shows that code as a class to keep."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import micrornn as mr
from micrornn import nn
from micrornn.engine.compile import ValueDependentError
from micrornn.interop import to_torch

torch = pytest.importorskip("torch", reason="to_torch exports to PyTorch: these tests need torch installed")
from micrornn.interop_torch import torch_code  # noqa: E402

TOL = 1e-10


def _close(a, b, what):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, what
    assert np.all(np.abs(a - b) <= TOL + TOL * np.abs(b)), f"{what}: max diff {np.abs(a - b).max()}"


def _compare(model, x, loss_of, torch_loss_of, x_grad=False):
    """Run the model and its torch export on x; compare outputs, loss and every gradient."""
    exported = to_torch(model)
    assert [n for n, _ in exported.named_parameters()] == [n for n, _ in model.named_parameters()]
    model.zero_grad()
    xm = mr.Tensor(x, requires_grad=True) if x_grad else x
    out = model(xm)
    loss = loss_of(out)
    loss.backward()
    xt = torch.tensor(x, requires_grad=x_grad)
    tout = exported(xt)
    tloss = torch_loss_of(tout)
    tloss.backward()
    _close(tloss.item(), loss.item(), "loss")
    mine = out if isinstance(out, tuple) else (out,)
    theirs = tout if isinstance(tout, tuple) else (tout,)
    for m, t in zip(mine, theirs):
        for mm, tt in zip(m if isinstance(m, tuple) else (m,), t if isinstance(t, tuple) else (t,)):
            _close(tt.detach().numpy(), mm.data, "output")
    params = dict(exported.named_parameters())
    for name, p in model.named_parameters():
        _close(params[name].grad.numpy(), p.grad, name)
    if x_grad:
        _close(xt.grad.numpy(), xm.grad, "input")


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, False), (2, True)])
def test_sequence_models_export_with_equal_outputs_and_gradients(cell, layers, bidirectional):
    model = nn.SequenceModel(9, 5, 9, num_layers=layers, cell=cell, bidirectional=bidirectional, rng=1)
    rng = np.random.default_rng(2)
    x, y = rng.integers(0, 9, (6, 3)), rng.integers(0, 9, (6, 3))
    yt = torch.as_tensor(y.reshape(-1))
    _compare(model, x, lambda out: mr.functional.cross_entropy(out[0], y, reduction="sum"),
             lambda out: torch.nn.functional.cross_entropy(out[0].reshape(-1, 9), yt, reduction="sum"))


def test_fused_model_exports_unrolled():
    model = nn.SequenceModel(9, 5, 9, cell="lstm", fused=True, rng=1)
    x = np.random.default_rng(3).integers(0, 9, (4, 2))
    _compare(model, x, lambda out: (out[0] * out[0]).sum(), lambda out: (out[0] * out[0]).sum())
    assert model.rnn.fused is True  # restored after the trace


class Peephole(nn.Module):
    """A user cell with a tuple state: an LSTM-like cell whose gates also read c."""

    def __init__(self, input_size, hidden_size, rng=0):
        r = np.random.default_rng(rng)
        self.hidden_size = hidden_size
        self.Wx = nn.Parameter(r.normal(0, 0.3, (input_size, 3 * hidden_size)))
        self.Wh = nn.Parameter(r.normal(0, 0.3, (hidden_size, 3 * hidden_size)))
        self.p = nn.Parameter(r.normal(0, 0.3, (hidden_size,)))

    def initial_state(self, batch):
        zeros = mr.Tensor(np.zeros((batch, self.hidden_size)))
        return zeros, zeros

    def forward(self, x, state):
        h, c = state
        H = self.hidden_size
        z = x @ self.Wx + h @ self.Wh
        i, f = (z[:, :H] + c * self.p).sigmoid(), (z[:, H:2 * H] - c * self.p).sigmoid()
        c = f * c + i * z[:, 2 * H:].tanh()
        return c.tanh() * i, c


def test_user_cell_exports_with_input_gradient():
    rec = nn.Recurrent(Peephole(4, 3))
    x = np.random.default_rng(4).normal(size=(5, 2, 4))
    _compare(rec, x, lambda out: (out[0] ** 2).sum() + out[1][1].sum(),
             lambda out: (out[0] ** 2).sum() + out[1][1].sum(), x_grad=True)


def test_a_new_input_shape_generates_new_code():
    model = nn.SequenceModel(9, 5, 9, cell="gru", rng=1)
    exported = to_torch(model)
    for T, B in ((3, 2), (5, 4)):
        x = np.random.default_rng(T).integers(0, 9, (T, B))
        _close(exported(torch.as_tensor(x))[0].detach().numpy(), model(x)[0].data, f"T={T} B={B}")
    assert len(exported._forwards) == 2


def test_torch_code_is_a_class_that_runs_as_written():
    model = nn.SequenceModel(9, 5, 9, num_layers=2, cell="rnn", rng=1)
    x = np.random.default_rng(5).integers(0, 9, (4, 3))
    code = torch_code(model, x)
    assert "class Exported(torch.nn.Module):" in code and "torch.tanh(" in code
    assert "self.rnn.cells[1].W = torch.nn.Parameter" in code
    scope = {}
    exec(code, scope)  # the shown code is the whole model: build it, load the weights, run it
    kept = scope["Exported"]()
    kept.load_state_dict(to_torch(model).state_dict())
    logits, h_n = kept(torch.as_tensor(x))
    ref_logits, ref_h = model(x)
    _close(logits.detach().numpy(), ref_logits.data, "logits")
    _close(h_n.detach().numpy(), ref_h.data, "h_n")


def test_dropout_exports_as_a_fresh_torch_mask():
    model = nn.SequenceModel(9, 5, 9, num_layers=2, dropout=0.5, rng=1)
    exported = to_torch(model)  # torch's train() mode keys the code, as micrornn's does
    x = torch.as_tensor(np.random.default_rng(6).integers(0, 9, (4, 3)))
    a, b = exported(x)[0], exported(x)[0]
    assert not torch.equal(a, b)
    exported.eval()
    _close(exported(x)[0].detach().numpy(), model.eval()(x.numpy())[0].data, "eval")
    assert "bernoulli_" in torch_code(model.train(), x.numpy(), training=True)


DDP_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, torch, torch.distributed as dist
    from micrornn import nn
    from micrornn.engine.compile import ValueDependentError
    from micrornn.interop import to_torch

    def work(rank, folder):
        dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=2)
        torch.set_num_threads(1)
        model = to_torch(nn.SequenceModel(9, 5, 9, cell="lstm", rng=1))
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        rng = np.random.default_rng(7)
        x, y = rng.integers(0, 9, (6, 4)), rng.integers(0, 9, (6, 4))
        half = slice(2 * rank, 2 * rank + 2)  # each process: half of the batch (time-major: axis 1)
        logits, _ = ddp(torch.as_tensor(x[:, half]))
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 9), torch.as_tensor(y[:, half]).reshape(-1))
        loss.backward()  # DDP averages the two processes' gradients
        if rank == 0:
            np.savez(f"{folder}/ddp.npz", **{n: p.grad.numpy() for n, p in model.named_parameters()})
        dist.destroy_process_group()

    if __name__ == "__main__":
        torch.multiprocessing.spawn(work, args=(sys.argv[1],), nprocs=2)
""")


@pytest.mark.slow  # two torch processes: ~10 s
def test_ddp_on_two_processes_gives_the_gradients_of_one_process_on_the_whole_batch(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    ddp = np.load(tmp_path / "ddp.npz")
    model = nn.SequenceModel(9, 5, 9, cell="lstm", rng=1)
    rng = np.random.default_rng(7)
    x, y = rng.integers(0, 9, (6, 4)), rng.integers(0, 9, (6, 4))
    loss = mr.functional.cross_entropy(model(x)[0], y)  # the mean over the whole batch, one process
    loss.backward()
    for name, p in model.named_parameters():
        _close(ddp[name], p.grad, name)


class _OneHotFirst(nn.Module):
    """A forward whose one-hot is NumPy on the indices: a constant computed from the input values."""

    def __init__(self):
        super().__init__()
        self.rec = nn.Recurrent(Peephole(7, 5))

    def __call__(self, idx):
        return self.rec(mr.functional.one_hot(idx, 7))[0]


def test_a_constant_computed_from_the_input_values_is_refused_not_frozen():
    x = np.random.default_rng(3).integers(0, 7, (6, 3))
    with pytest.raises(ValueDependentError, match="changed with the input values"):
        to_torch(_OneHotFirst())(torch.as_tensor(x))


def test_index_inputs_trace_on_the_call_values():
    model = nn.SequenceModel(7, 5, 7, cell="gru", rng=1)
    exported = to_torch(model)
    for seed in (3, 4):
        x = np.random.default_rng(seed).integers(0, 7, (6, 3))
        _close(exported(torch.as_tensor(x))[0].detach().numpy(), model(x)[0].data, f"logits, seed {seed}")


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_the_export_takes_the_modules_call_signature_with_lengths_and_state(cell):
    model = nn.SequenceModel(7, 5, 7, cell=cell, rng=1)
    exported = to_torch(model)
    rng = np.random.default_rng(6)
    for lengths in ([6, 4, 2], [3, 6, 5]):
        x = rng.integers(0, 7, (6, 3))
        logits, h_n = model(x, None, lengths=np.array(lengths))
        tlogits, th_n = exported(torch.as_tensor(x), h0=None, lengths=torch.tensor(lengths))
        _close(tlogits.detach().numpy(), logits.data, f"logits, lengths {lengths}")
        for t, m in zip(th_n if isinstance(th_n, tuple) else (th_n,), h_n if isinstance(h_n, tuple) else (h_n,)):
            _close(t.detach().numpy(), m.data, f"final state, lengths {lengths}")
    rec = nn.Recurrent(Peephole(4, 3))
    x = rng.normal(size=(5, 2, 4))
    state = tuple(rng.normal(size=(2, 3)) for _ in range(2))
    out, _ = rec(x, state=tuple(mr.Tensor(s) for s in state), lengths=[5, 3])
    tout, _ = to_torch(rec)(torch.as_tensor(x), state=tuple(torch.as_tensor(s) for s in state), lengths=[5, 3])
    _close(tout.detach().numpy(), out.data, "user cell with a state and lengths")
    _close(to_torch(rec)(torch.as_tensor(x), state=None)[0].detach().numpy(), rec(x)[0].data, "state=None")
