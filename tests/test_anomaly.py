"""detect_anomaly: names the op, shapes, scope and user line; off by default."""
import warnings

import numpy as np
import pytest

import micrornn as mr
from micrornn.autograd import state


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
