"""windowed_loss: nanoGPT's random-window estimate, against a plain loop over the windows."""
import numpy as np
import pytest

from micrornn.nn import SequenceModel
from micrornn.train import evaluate, windowed_loss
from micrornn.train.windows import window_starts

IDS = np.random.default_rng(0).integers(0, 7, size=400)


def by_hand(model, ids, window, count, seed):
    """One window at a time from a zero state, each position's loss summed, then the mean."""
    starts = np.random.default_rng(seed).integers(0, len(ids) - window, size=count)
    total = 0.0
    for s in starts:
        x, y = ids[s:s + window].reshape(-1, 1), ids[s + 1:s + window + 1].reshape(-1, 1)
        total += model.loss(x, y, None, reduction="sum")[0].item()
    return total / (count * window)


@pytest.mark.parametrize("cell,fused", [("rnn", True), ("lstm", False), ("gru", True)])
def test_windowed_loss_equals_a_plain_loop_over_windows(cell, fused):
    model = SequenceModel(7, 5, 7, num_layers=2, cell=cell, fused=fused, rng=1)
    expected = by_hand(model, IDS, 12, 9, 3)
    for batch in (1, 4, 64):
        assert windowed_loss(model, IDS, 12, 9, 3, batch=batch) == pytest.approx(expected, rel=1e-12, abs=0)
    assert model.rnn.fused == fused  # evaluation mode restored


def test_windows_are_seeded_and_start_from_zero_state():
    model = SequenceModel(7, 5, 7, rng=2)
    assert windowed_loss(model, IDS, 20, 15, seed=7) == windowed_loss(model, IDS, 20, 15, seed=7)
    assert windowed_loss(model, IDS, 20, 15, seed=7) != windowed_loss(model, IDS, 20, 15, seed=8)
    starts = window_starts(len(IDS), 20, 500, 0)
    assert starts.min() >= 0 and starts.max() <= len(IDS) - 21  # every target inside the text
    # one window over the whole text is the stream score of that text (both start from zero)
    assert windowed_loss(model, IDS[:31], 30, 1, 0) == pytest.approx(evaluate(model, IDS[:31]), rel=1e-12)


def test_windowed_loss_refuses_bad_arguments():
    model = SequenceModel(7, 5, 7, rng=2)
    with pytest.raises(ValueError, match="window 400 is longer"):
        windowed_loss(model, IDS, 400, 5)
    with pytest.raises(ValueError, match="count must be an integer >= 1"):
        windowed_loss(model, IDS, 10, 0)
    with pytest.raises(ValueError, match="batch"):
        windowed_loss(model, IDS, 10, 3, batch=0)
    with pytest.raises(ValueError, match="1-D"):
        windowed_loss(model, IDS.reshape(20, 20), 10, 3)
