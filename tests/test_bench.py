"""The benchmark: the floor computes what micrornn computes, the report prints, bad options are refused.

No timing assertions: benchmarks print numbers, they are never timed tests.
"""
import numpy as np
import pytest

from micrornn import bench, bptt
from micrornn.cli import main
from micrornn.nn import SequenceModel

TINY = ["bench", "--sizes", "small", "--repeats", "1", "--dtype", "float64", "--quick", "--no-torch", "--no-jax"]
NAMES = ["rnn.cells.0.U", "rnn.cells.0.W", "rnn.cells.0.b", "head.weight", "head.bias"]


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 2e-5)])
@pytest.mark.parametrize("T, B", [(1, 1), (7, 3)])
def test_floor_matches_the_analytic_bptt(dtype, tol, T, B):
    model = SequenceModel(11, 6, 9, dtype=np.dtype(dtype), rng=0)
    rng = np.random.default_rng(1)
    indices, targets = rng.integers(0, 11, size=(T, B)), rng.integers(0, 9, size=(T, B))
    floor = bench.RNNFloor(*bench.contenders.parameter_arrays(model), indices, targets)
    floor.step()
    loss = floor.step()  # twice: buffers reused must not leak one step into the next
    ref_loss, ref = bptt.loss_and_grads(model, np.eye(11, dtype=dtype)[indices], targets)
    assert abs(loss - ref_loss) <= tol * abs(ref_loss)
    for key, name in zip("UWbVc", NAMES):
        got = floor.grads[key]
        assert got.dtype == np.dtype(dtype) and got.shape == ref[name].shape
        np.testing.assert_allclose(got, ref[name], rtol=tol, atol=tol * np.abs(ref[name]).max())


def test_every_numpy_contender_computes_the_floors_loss():
    steps = bench.contenders_for("small", "float32")
    assert list(steps) == ["floor", "bptt", "unrolled", "fused", "compiled"]
    assert bench.loss_mismatches(steps, "float32") == []


def test_bench_prints_the_table(capsys):
    assert main(TINY + ["--no-extras"]) == 0
    out = capsys.readouterr().out
    for text in ("floor ms", "bptt", "unrolled", "fused", "threads: one", "peak memory", "targets missed",
                 "unrolled <= 2x", "fused <= 1.1x", "compiled <= 1.3x"):
        assert text in out, text
    assert "loss differs" not in out


@pytest.mark.parametrize("bad", [["--sizes", "huge"], ["--sizes", ""], ["--repeats", "0"], ["--repeats", "x"],
                                 ["--dtype", "float16"], ["--threads", "3"], ["--bogus"]])
def test_bench_rejects_bad_options(bad, capsys):
    assert main(["bench"] + bad) == 2
    assert "error:" in capsys.readouterr().err


def test_a_group_in_a_subprocess_reports_ratios_to_its_own_floor():
    options = bench.Options(sizes=("small",), dtypes=("float32",), rounds={"small": 1}, torch=False, jax=False)
    result = bench.measure_in_subprocess(options, "1")
    rows = {row["contender"]: row for row in result["rows"]}
    assert set(rows) == {"floor", "bptt", "unrolled", "fused", "compiled"}
    assert rows["floor"]["ratio"] == 1.0 and not any(row["loss_mismatch"] for row in rows.values())
    assert rows["fused"]["ratio"] == pytest.approx(rows["fused"]["median"] / rows["floor"]["median"])
    assert "threads: one" in bench.format_timings(result, options)


@pytest.mark.slow  # imports torch / JAX in a subprocess: 5-15 s each
@pytest.mark.parametrize("group, module", [("torch", "torch"), ("jax", "jax")])
def test_framework_contenders_compute_the_floors_loss(group, module):
    pytest.importorskip(module)
    options = bench.Options(sizes=("small",), dtypes=("float64",), rounds={"small": 1})
    result = bench.measure_in_subprocess(options, "1", group)
    assert {row["contender"] for row in result["rows"]} > {"floor"}
    assert not any(row["loss_mismatch"] for row in result["rows"])


def test_memory_and_extras_at_tiny_sizes():
    memory = bench.measure_memory(("small",), ("float32",))
    assert memory[0]["floor"] > 0 and memory[0]["unrolled"] > 0 and memory[0]["compiled"] > 0
    assert "unrolled" in bench.format_memory(memory) and "(compiled)" in bench.format_memory(memory)
    scalar = bench.scalar_throughput(nodes=2000, repeats=1)
    sequences = bench.long_sequences((20, 50), repeats=1)
    assert scalar["nodes"] > 1000 and [s["steps"] for s in sequences] == [20, 50]
    text = bench.format_extras(scalar, sequences)
    assert "nodes/s" in text and "T=    50" in text and "per step" in text


def test_gated_rows_compare_with_the_analytic_numpy_routines(capsys):
    assert main(TINY + ["--no-extras", "--cells", "lstm,gru", "--dtype", "float32"]) == 0
    out = capsys.readouterr().out
    assert "lstm float32" in out and "gru  float32" in out and "fused <= 1.15x" in out
    assert "loss differs" not in out
    assert main(["bench", "--cells", "rnn,elman"]) == 2


def test_bench_says_which_contenders_are_missing_and_why(capsys, monkeypatch):
    assert main(TINY + ["--no-extras"]) == 0
    out = capsys.readouterr().out
    assert "not measured: torch nn.RNN*, torch unrolled (left out by --no-torch)" in out
    assert "not measured: JAX scan (left out by --no-jax)" in out
    monkeypatch.setattr(bench.report, "available", lambda module: False)
    options = bench.options.Options()  # torch and JAX asked for
    lines = bench.report.header_lines(options)
    assert any(line.startswith("not measured: torch nn.RNN*, torch unrolled (torch is not installed") for line in lines)
    assert any(line.startswith("not measured: JAX scan (jax is not installed") for line in lines)
    monkeypatch.setattr(bench.report, "available", lambda module: True)
    assert not [line for line in bench.report.header_lines(options) if line.startswith("not measured")]


def test_memory_table_marks_the_unrolled_and_compiled_steps_against_the_target():
    row = {"size": "small", "dtype": "float64", "floor": 100, "bptt": 50, "unrolled": 120, "fused": 60, "compiled": 140}
    line = bench.format_memory([row]).splitlines()[-1]
    assert line.split()[3:7] == ["0.50x", "1.20x", "0.60x", "1.40x"]
    assert line.endswith("<=1.3x  PASS (unrolled), MISS (compiled)")
    row.update(unrolled=131, compiled=130)
    assert bench.format_memory([row]).endswith("MISS (unrolled), PASS (compiled)")
