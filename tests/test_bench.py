"""Smoke tests of the benchmark (tiny sizes, one round): it prints its tables and rejects bad options.

No timing assertions: benchmarks print numbers, they are never timed tests.
"""
import pytest

from micrornn import bench
from micrornn.cli import main

TINY = ["bench", "--sizes", "small", "--repeats", "1", "--dtype", "float64", "--quick", "--no-torch"]


def test_bench_prints_the_table(capsys):
    assert main(TINY + ["--threads", "1", "--no-extras"]) == 0
    out = capsys.readouterr().out
    for text in ("reference: bptt.loss_and_grads", "micrornn unrolled (indices)", "micrornn fused (indices)",
                 "threads: one", "peak memory", "<=4x", "<=1.1x"):
        assert text in out
    assert "PASS" in out or "MISS" in out
    assert "loss differs" not in out


@pytest.mark.parametrize("bad", [["--sizes", "huge"], ["--sizes", ""], ["--repeats", "0"], ["--repeats", "x"],
                                 ["--dtype", "float16"], ["--threads", "3"], ["--bogus"]])
def test_bench_rejects_bad_options(bad, capsys):
    assert main(["bench"] + bad) == 2
    assert "error:" in capsys.readouterr().err


def test_one_thread_mode_in_a_subprocess():
    options = bench.Options(sizes=("small",), dtypes=("float32",), threads=("1",), rounds={"small": 1},
                            torch=False)
    result = bench.measure_in_subprocess(options, "1")
    names = {row["contender"] for row in result["rows"]}
    assert {"reference", "unrolled", "fused"} <= names
    assert not any(row["loss_mismatch"] for row in result["rows"])
    assert "threads: one" in bench.format_timings(result, options)


def test_extras_at_tiny_sizes():
    scalar = bench.scalar_throughput(nodes=2000, repeats=1)
    seq = bench.long_sequence(steps=50, repeats=1)
    assert scalar["nodes"] > 1000 and seq["unrolled"]["peak"] > 0
    assert "nodes/s" in bench.format_extras(scalar, seq)
