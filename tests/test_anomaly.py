"""detect_anomaly: names the op, shapes, scope and user line; off by default."""
import warnings

import numpy as np
import pytest

import micrornn as mr
from micrornn.engine.backward import state


def test_forward_nan_names_op_shapes_and_line():
    x = mr.Tensor([1.0, -1.0], requires_grad=True)
    with mr.detect_anomaly(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(mr.AnomalyError) as info:
            x.log()
    message = str(info.value)
    assert "'log'" in message and "(2,)" in message and "nan" in message
    assert "test_anomaly.py" in message  # the user's line, not an engine file


def test_backward_inf_names_the_op_whose_vjp_made_it():
    x = mr.Tensor([1.0, 2.0], requires_grad=True)
    with mr.detect_anomaly(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y = ((x - x).sum() ** 0.5)  # finite forward (0), infinite derivative of sqrt at 0
        with pytest.raises(mr.AnomalyError, match="backward of 'pow'.*inf"):
            y.backward()


def test_rnn_anomaly_reports_layer_and_step():
    model = mr.nn.SequenceModel(3, 4, 3, nonlinearity="relu", rng=0)
    cell = model.rnn.cells[0]
    cell.U.data[...] = 1.0
    cell.b.data[...] = 1.0
    cell.W.data[...] = 1e200 * np.eye(4)  # h_t grows by 1e200 a step: overflows at step 3
    with mr.detect_anomaly(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(mr.AnomalyError, match=r"'matmul_add'.*StepScope\(layer=0, step=3\)"):
            model.loss(np.ones((5, 2, 3)), np.zeros((5, 2), dtype=int))


def test_off_by_default_and_restored_after_context():
    assert state.anomaly is False
    with mr.detect_anomaly():
        assert state.anomaly is True
    assert state.anomaly is False
    x = mr.Tensor([-1.0], requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isnan(x.log().data).all()  # no check, no error when off


# ---- issue 16, item 12: every gradient checked, the right op blamed, fused time steps named ----

def test_an_infinite_weight_gradient_from_a_finite_loss_is_caught_at_the_product():
    x = mr.Tensor(np.full((100, 3), 1e307))
    W = mr.Tensor(np.full((3, 2), 1e-10), requires_grad=True)
    with mr.detect_anomaly():
        loss = (x @ W).sum()  # 3e297 per entry: finite
        assert np.isfinite(loss.item())
        with pytest.raises(mr.AnomalyError, match=r"backward of 'matmul'.*inf.*input 1"):
            loss.backward()  # dW = x^T 1 = 1e309: inf


def test_the_head_product_is_blamed_not_the_transpose_of_its_weight():
    head = mr.nn.Linear(3, 2, rng=0)
    head.weight.data[...] = 1e-10
    states = mr.Tensor(np.full((50, 4, 3), 1e307))
    with mr.detect_anomaly(), pytest.raises(mr.AnomalyError) as info:
        head(states).sum().backward()
    assert "'matmul_add'" in str(info.value) and "'transpose'" not in str(info.value)


def test_a_sum_of_finite_gradients_that_overflows_names_the_accumulation():
    w = mr.Tensor([1e-300], requires_grad=True)
    with mr.detect_anomaly(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss = (w * 1e308).sum() + (w * 1e308).sum()  # 2e8; each use's gradient is 1e308, their sum inf
        with pytest.raises(mr.AnomalyError, match=r"gradient of a leaf tensor of shape \(1,\), summed over its uses"):
            loss.backward()


def _fused_relu_layer(T, growth):
    rnn = mr.nn.RNN(1, 1, nonlinearity="relu", fused=True, rng=0)
    cell = rnn.cells[0]
    cell.U.data[...], cell.b.data[...], cell.W.data[...] = 1.0, 0.0, growth
    return rnn, np.ones((T, 1, 1))


def test_fused_forward_names_the_first_bad_time_step():
    rnn, x = _fused_relu_layer(6, 1e200)  # h_t = 1 + 1e200 h_{t-1}: inf from step 3 on
    with mr.detect_anomaly(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(mr.AnomalyError, match=r"'rnn_layer'.*first at time step 3\b"):
            rnn(x)


def test_fused_backward_names_the_first_bad_time_step_going_back_in_time():
    rnn, x = _fused_relu_layer(20, 10.0)  # finite forward; delta_t = 1e300 * 10^(20-t)
    with mr.detect_anomaly(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out, _ = rnn(x)
        g = np.zeros(out.shape)
        g[-1] = 1e300
        with pytest.raises(mr.AnomalyError, match=r"backward of 'rnn_layer'.*first at time step 11\b"):
            out.backward(g)  # 10^(20-t) > 1.8e8 first at t = 11
