"""Tests for micrornn.nn.optim: updates against hand-computed values, clipping, validation, state."""
import numpy as np
import pytest

from micrornn.nn.optim import SGD, Adagrad, Adam, AdamW, clip_grad_norm_, clip_grad_value_

TOL = dict(atol=1e-12, rtol=1e-10)


class P:
    """Stand-in parameter: just `.data` and `.grad`."""

    def __init__(self, data, grad=None):
        self.data = np.array(data, dtype=float)
        self.grad = None if grad is None else np.array(grad, dtype=float)


# Fixed gradients for three steps of a 2-element parameter starting at [1.0, -2.0].
X0 = np.array([1.0, -2.0])
GRADS = [np.array([0.5, -1.0]), np.array([0.25, 2.0]), np.array([-1.0, 0.5])]


def run(opt_cls, steps=3, **kw):
    p = P(X0)
    opt = opt_cls([p], **kw)
    for g in GRADS[:steps]:
        p.grad = g.copy()
        opt.step()
    return p.data


def test_sgd_plain_matches_hand_computation():
    # x <- x - lr * g, three times
    expected = X0 - 0.1 * (GRADS[0] + GRADS[1] + GRADS[2])
    np.testing.assert_allclose(run(SGD, lr=0.1), expected, **TOL)


def test_sgd_momentum_matches_hand_computation():
    lr, mu = 0.1, 0.9
    b1 = GRADS[0]
    b2 = mu * b1 + GRADS[1]
    b3 = mu * b2 + GRADS[2]
    expected = X0 - lr * (b1 + b2 + b3)
    np.testing.assert_allclose(run(SGD, lr=lr, momentum=mu), expected, **TOL)


def test_adagrad_matches_hand_computation():
    lr, eps = 0.5, 1e-8
    x, acc = X0.copy(), np.zeros(2)
    for g in GRADS:
        acc = acc + g * g
        x = x - lr * g / (np.sqrt(acc) + eps)
    np.testing.assert_allclose(run(Adagrad, lr=lr, eps=eps), x, **TOL)
    # first step by hand: g/|g| = sign(g), so x1 = x0 - lr * sign(g0)
    np.testing.assert_allclose(run(Adagrad, steps=1, lr=lr, eps=0.0), X0 - lr * np.sign(GRADS[0]),
                               **TOL)


def test_adam_matches_hand_computation():
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    x, m, v = X0.copy(), np.zeros(2), np.zeros(2)
    for t, g in enumerate(GRADS, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        x = x - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    np.testing.assert_allclose(run(Adam, lr=lr, betas=(b1, b2), eps=eps), x, **TOL)
    # first Adam step is lr * sign(g) (bias-corrected m/sqrt(v) = g/|g|) up to eps
    np.testing.assert_allclose(run(Adam, steps=1, lr=lr, eps=0.0), X0 - lr * np.sign(GRADS[0]),
                               **TOL)


@pytest.mark.parametrize("opt_cls,kw", [(SGD, {"lr": 0.1, "momentum": 0.9}),
                                        (Adagrad, {"lr": 0.1}), (Adam, {"lr": 0.1}),
                                        (AdamW, {"lr": 0.1, "weight_decay": 0.1})])
def test_updates_in_place_and_keep_dtype(opt_cls, kw):
    p = P([1.0, 2.0])
    p.data = p.data.astype(np.float32)
    ref = p.data
    p.grad = np.array([0.5, -0.5])  # float64 gradient on a float32 parameter
    opt_cls([p], **kw).step()
    assert p.data is ref and p.data.dtype == np.float32
    assert not np.allclose(p.data, [1.0, 2.0])


def test_none_grad_is_skipped_and_zero_grad_clears():
    a, b = P([1.0], grad=[1.0]), P([5.0])
    opt = SGD((q for q in [a, b]), lr=0.5)  # a generator is accepted
    opt.step()
    np.testing.assert_allclose(a.data, [0.5], **TOL)
    np.testing.assert_allclose(b.data, [5.0], **TOL)
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_adam_counts_steps_per_parameter():
    # A parameter skipped on step 1 gets the bias correction of its own first step on step 2.
    a, b = P([0.0], grad=[1.0]), P([0.0])
    opt = Adam([a, b], lr=0.1)
    opt.step()
    b.grad = np.array([1.0])
    opt.step()
    np.testing.assert_allclose(b.data, [-0.1], atol=1e-7)


@pytest.mark.parametrize("make,match", [
    (lambda: SGD([], lr=0.1), "empty parameter list"),
    (lambda: SGD([P([1.0])], lr=-0.1), r"lr .* got -0.1"),
    (lambda: SGD([P([1.0])], lr=float("nan")), "lr"),
    (lambda: SGD([P([1.0])], lr=0.1, momentum=-0.5), r"momentum .* got -0.5"),
    (lambda: Adagrad([P([1.0])], lr=0.1, eps=-1e-8), r"eps .* got -1e-08"),
    (lambda: Adam([P([1.0])], betas=(1.0, 0.999)), r"betas\[0\] .* got 1.0"),
    (lambda: Adam([P([1.0])], betas=(0.9, -0.1)), r"betas\[1\] .* got -0.1"),
    (lambda: Adam([P([1.0])], betas=0.9), "pair"),
    (lambda: Adam([P([1.0])], lr=-1.0), "lr"),
])
def test_validation_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_duplicate_and_non_parameter_rejected():
    p = P([1.0])
    with pytest.raises(ValueError, match=r"params\[1\] is the same object as params\[0\]"):
        SGD([p, p], lr=0.1)
    with pytest.raises(TypeError, match=r"params\[0\]"):
        SGD([np.zeros(2)], lr=0.1)


@pytest.mark.parametrize("opt_cls", [SGD, Adagrad, Adam])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_grad_raises_and_leaves_everything_untouched(opt_cls, bad):
    a, b = P([1.0, 2.0], grad=[0.1, 0.2]), P([3.0], grad=[bad])
    opt = opt_cls([a, b], lr=0.1)
    before = opt.state_dict()
    with pytest.raises(FloatingPointError, match="parameter 1"):
        opt.step()
    np.testing.assert_array_equal(a.data, [1.0, 2.0])  # the finite one was not updated either
    np.testing.assert_array_equal(b.data, [3.0])
    after = opt.state_dict()
    assert after["step_count"] == before["step_count"] == 0
    for s0, s1 in zip(before["state"], after["state"]):
        for k in s0:
            np.testing.assert_array_equal(s0[k], s1[k])


def test_grad_shape_mismatch_is_reported():
    p = P([1.0, 2.0], grad=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"parameter 0 has shape \(3,\), expected \(2,\)"):
        SGD([p], lr=0.1).step()


def test_clip_grad_norm_scales_globally():
    a, b = P([0.0, 0.0], grad=[3.0, 0.0]), P([0.0], grad=[4.0])
    total = clip_grad_norm_([a, b, P([1.0])], max_norm=1.0)  # a None grad is skipped
    assert total == pytest.approx(5.0)
    np.testing.assert_allclose(a.grad, [0.6, 0.0], **TOL)
    np.testing.assert_allclose(b.grad, [0.8], **TOL)
    new_norm = np.sqrt(np.sum(a.grad ** 2) + np.sum(b.grad ** 2))
    assert new_norm == pytest.approx(1.0)


def test_clip_grad_norm_leaves_small_grads_alone_and_works_in_place():
    g = np.array([0.3, 0.4])
    p = P([0.0, 0.0])
    p.grad = g
    assert clip_grad_norm_([p], max_norm=1.0) == pytest.approx(0.5)
    np.testing.assert_array_equal(p.grad, [0.3, 0.4])
    clip_grad_norm_([p], max_norm=0.25)
    assert p.grad is g  # scaled in place
    np.testing.assert_allclose(g, [0.15, 0.2], **TOL)


def test_clip_grad_norm_scales_a_shared_gradient_array_once():
    shared = np.array([3.0, 4.0])
    a, b = P([0.0, 0.0]), P([0.0, 0.0])
    a.grad = b.grad = shared
    total = clip_grad_norm_([a, b], max_norm=np.sqrt(50.0) / 10)
    assert total == pytest.approx(np.sqrt(50.0))
    np.testing.assert_allclose(shared, [0.3, 0.4], **TOL)


def test_clip_grad_value():
    p = P([0.0] * 4, grad=[-3.0, -0.5, 0.5, 3.0])
    clip_grad_value_([p], 1.0)
    np.testing.assert_array_equal(p.grad, [-1.0, -0.5, 0.5, 1.0])
    with pytest.raises(ValueError, match="clip_value"):
        clip_grad_value_([p], -1.0)
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm_([p], -1.0)


@pytest.mark.parametrize("opt_cls,kw", [(SGD, {"lr": 0.1, "momentum": 0.9}),
                                        (Adagrad, {"lr": 0.1}),
                                        (Adam, {"lr": 0.05, "betas": (0.8, 0.99)}),
                                        (AdamW, {"lr": 0.05, "weight_decay": 0.3, "matrices_only": True})])
def test_state_dict_round_trip_gives_identical_continued_updates(opt_cls, kw):
    rng = np.random.default_rng(0)
    grads = [[rng.normal(size=(2, 3)), rng.normal(size=3)] for _ in range(6)]

    def make():
        ps = [P(np.ones((2, 3))), P(np.zeros(3))]
        return ps, opt_cls(ps, **kw)

    def do_steps(ps, opt, gs):
        for step_grads in gs:
            for p, g in zip(ps, step_grads):
                p.grad = g.copy()
            opt.step()

    ps_ref, opt_ref = make()
    do_steps(ps_ref, opt_ref, grads)

    ps_a, opt_a = make()
    do_steps(ps_a, opt_a, grads[:3])
    saved_state = opt_a.state_dict()
    saved_params = [p.data.copy() for p in ps_a]
    do_steps(ps_a, opt_a, grads[3:4])  # mutating the live optimizer must not touch the saved dict

    ps_b, _ = make()
    for p, d in zip(ps_b, saved_params):
        p.data[...] = d
    opt_b = opt_cls(ps_b, lr=123.0)  # hyperparameters come back from the state dict
    opt_b.load_state_dict(saved_state)
    assert opt_b.hyperparameters == opt_ref.hyperparameters
    do_steps(ps_b, opt_b, grads[3:])
    for p_ref, p_b in zip(ps_ref, ps_b):
        np.testing.assert_array_equal(p_ref.data, p_b.data)
    assert opt_b.step_count == opt_ref.step_count == 6


def test_load_state_dict_rejects_mismatches():
    opt = Adam([P([1.0, 2.0])])
    with pytest.raises(ValueError, match="'SGD'"):
        opt.load_state_dict(SGD([P([1.0, 2.0])], lr=0.1).state_dict())
    with pytest.raises(ValueError, match="2 parameters"):
        opt.load_state_dict(Adam([P([1.0]), P([2.0])]).state_dict())
    with pytest.raises(ValueError, match=r"exp_avg.*shape \(3,\).*expected shape \(2,\)"):
        opt.load_state_dict(Adam([P([1.0, 2.0, 3.0])]).state_dict())


def test_adam_refuses_a_bad_step_count_before_changing_anything():
    """A refused state dict leaves the optimizer as it was: no half-loaded buffers or hyperparameters."""
    p = P([1.0, 2.0])
    opt = Adam([p], lr=0.1)
    p.grad = np.array([0.5, -0.5])
    opt.step()
    before = opt.state_dict()
    other = Adam([P([3.0, 4.0])], lr=0.5)
    other.params[0].grad = np.array([1.0, 1.0])
    other.step()
    bad = other.state_dict()
    bad["state"][0]["step"] = -3
    with pytest.raises(ValueError, match="step of parameter 0 must be a non-negative integer"):
        opt.load_state_dict(bad)
    after = opt.state_dict()
    assert after["hyperparameters"] == before["hyperparameters"] and after["step_count"] == before["step_count"]
    for name in ("exp_avg", "exp_avg_sq"):
        np.testing.assert_array_equal(after["state"][0][name], before["state"][0][name])
    assert after["state"][0]["step"] == before["state"][0]["step"] == 1


def adamw_by_hand(x, grads, lr, b1, b2, eps, wd):
    """PyTorch's AdamW written out: p *= 1 - lr*wd, then the bias-corrected Adam step."""
    x, m, v = np.array(x, dtype=float), np.zeros_like(x, dtype=float), np.zeros_like(x, dtype=float)
    for t, g in enumerate(grads, start=1):
        x = x * (1 - lr * wd)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        x = x - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    return x


def test_adamw_matches_hand_computation_and_differs_from_adam():
    lr, b1, b2, eps, wd = 0.01, 0.9, 0.99, 1e-8, 0.5
    expected = adamw_by_hand(X0, GRADS, lr, b1, b2, eps, wd)
    got = run(AdamW, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    np.testing.assert_allclose(got, expected, **TOL)
    assert np.abs(got - run(Adam, lr=lr, betas=(b1, b2), eps=eps)).max() > 1e-4  # the decay did something
    np.testing.assert_allclose(run(AdamW, lr=lr, weight_decay=0.0), run(Adam, lr=lr), **TOL)


def test_adamw_matrices_only_leaves_vectors_undecayed():
    rng = np.random.default_rng(1)
    W, b = P(rng.normal(size=(2, 3))), P(rng.normal(size=3))
    W0, b0 = W.data.copy(), b.data.copy()
    gW, gb = [rng.normal(size=(2, 3)) for _ in range(3)], [rng.normal(size=3) for _ in range(3)]
    opt = AdamW([W, b], lr=0.05, weight_decay=0.2, matrices_only=True)
    for g1, g2 in zip(gW, gb):
        W.grad, b.grad = g1.copy(), g2.copy()
        opt.step()
    np.testing.assert_allclose(W.data, adamw_by_hand(W0, gW, 0.05, 0.9, 0.999, 1e-8, 0.2), **TOL)
    np.testing.assert_allclose(b.data, adamw_by_hand(b0, gb, 0.05, 0.9, 0.999, 1e-8, 0.0), **TOL)


def test_adamw_refuses_bad_hyperparameters():
    with pytest.raises(ValueError, match="weight_decay"):
        AdamW([P([1.0])], weight_decay=-1.0)
    with pytest.raises(ValueError, match="matrices_only"):
        AdamW([P([1.0])], matrices_only="yes")


def test_adamw_matches_torch_adamw():
    torch = pytest.importorskip("torch", reason="the comparison with torch.optim.AdamW needs torch")
    rng = np.random.default_rng(2)
    start = [rng.normal(size=(3, 4)), rng.normal(size=4)]
    grads = [[rng.normal(size=(3, 4)), rng.normal(size=4)] for _ in range(5)]
    ours = [P(a) for a in start]
    theirs = [torch.tensor(a, requires_grad=True) for a in start]
    opt = AdamW(ours, lr=0.02, betas=(0.85, 0.98), eps=1e-7, weight_decay=0.1)
    topt = torch.optim.AdamW(theirs, lr=0.02, betas=(0.85, 0.98), eps=1e-7, weight_decay=0.1)
    for gs in grads:
        for p, t, g in zip(ours, theirs, gs):
            p.grad, t.grad = g.copy(), torch.tensor(g)
        opt.step()
        topt.step()
    for p, t in zip(ours, theirs):
        np.testing.assert_allclose(p.data, t.detach().numpy(), atol=1e-12, rtol=1e-10)
