"""The bench's NumPy MGU floor computes what the graph computes (float64 to 1e-12, central differences),
and `micrornn bench --cells mgu` prints the compiled-MGU row against it. No timing assertions."""
import numpy as np
import pytest

from micrornn import bench
from micrornn.bench.mgu import MGU, MGU_NAMES, MGUFloor
from micrornn.cli import main
from micrornn.nn import SequenceModel

KEYS = ("U", "W_f", "W_n", "V", "c")


def mgu_case(dtype="float64", T=6, B=3, I=7, H=5, O=4, seed=0):
    model = SequenceModel(I, H, O, dtype=np.dtype(dtype), rng=seed, cell=lambda i, h: MGU(i, h, rng=seed))
    rng = np.random.default_rng(seed + 1)
    indices, targets = rng.integers(0, I, size=(T, B)), rng.integers(0, O, size=(T, B))
    floor = MGUFloor(*bench.contenders.parameter_arrays(model, MGU_NAMES), indices, targets)
    return model, floor, indices, targets


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 2e-5)])
@pytest.mark.parametrize("T, B", [(1, 1), (6, 3)])
def test_numpy_mgu_matches_the_graphs_gradients(dtype, tol, T, B):
    model, floor, indices, targets = mgu_case(dtype, T, B)
    floor.step()
    loss = floor.step()  # twice: buffers reused must not leak one step into the next
    ref_loss, _ = model.loss(indices, targets, reduction="sum")
    ref_loss.backward()
    assert abs(loss - ref_loss.item()) <= tol * abs(ref_loss.item())
    named = dict(model.named_parameters())
    for key, name in zip(KEYS, MGU_NAMES):
        got, ref = floor.grads[key], named[name].grad
        assert got.dtype == np.dtype(dtype) and got.shape == ref.shape, name
        np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * np.abs(ref).max(), err_msg=name)


def test_numpy_mgu_matches_central_differences():
    model, floor, _, _ = mgu_case()
    floor.step()
    analytic = {k: floor.grads[k].copy() for k in KEYS}
    eps = 1e-6
    for key in KEYS:
        param = getattr(floor, key)
        numeric = np.empty_like(param)
        for i in np.ndindex(param.shape):
            old = param[i]
            param[i] = old + eps
            up = floor.step()
            param[i] = old - eps
            down = floor.step()
            param[i] = old
            numeric[i] = (up - down) / (2 * eps)
        np.testing.assert_allclose(analytic[key], numeric, rtol=1e-6, atol=1e-8, err_msg=key)


def test_mgu_contenders_compute_the_floors_loss():
    steps = bench.contenders_for("small", "float32", cell="mgu")
    assert list(steps) == ["floor", "unrolled", "compiled"]
    assert bench.loss_mismatches(steps, "float32") == []


def test_bench_prints_the_mgu_row_with_its_target(capsys):
    assert main(["bench", "--sizes", "small", "--repeats", "1", "--dtype", "float64", "--quick", "--no-torch",
                 "--no-jax", "--no-extras", "--cells", "mgu"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.split()[:3] == ["mgu", "float64", "small"])
    columns = row.split()  # cell dtype size T B H floor unrolled compiled noise targets-missed
    compiled = columns[8]
    assert (f"compiled {compiled} > 1.3x" in row) == (float(compiled.rstrip("x")) > 1.3)
    assert "mgu: the MGU user cell of docs/cells.md" in out and "compiled <= 1.3x" in out
    assert "loss differs" not in out
