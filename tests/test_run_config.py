"""One declaration of options: `train` options generated from TrainConfig, --config TOML, the TOML every
run writes beside its checkpoint (and a run repeated from it), presets as TOML files."""
from __future__ import annotations

import argparse
import tomllib
from dataclasses import dataclass, fields

import numpy as np
import pytest

from micrornn.cli import build_parser, main
from micrornn.cli.train import add_config_options
from micrornn.train import TrainConfig
from micrornn.train.checkpoint import load_checkpoint
from micrornn.train.config import PRESET_DIR, PRESETS, TrainConfig as Config, option, option_name, preset_settings, \
    read_config

from tiny_runs import TINY_TRAIN

TINY = [*TINY_TRAIN, "--val-every", "0", "--quiet", "--no-plot"]


def train_parser():
    return build_parser()._subparsers._group_actions[0].choices["train"]


def test_every_field_has_an_option_with_its_help():
    parser = train_parser()
    for f in fields(TrainConfig):
        action = parser._option_string_actions[option_name(f.name)]
        assert action.dest == f.name and f.metadata["help"].split(";")[0][:20] in action.help


def test_a_new_field_gets_an_option_without_more_code():
    @dataclass
    class Extended(Config):
        widget_count: int = option(3, "how many widgets", metavar="N", low=1)
        mood: str = option("calm", "the mood", choices=("calm", "wild"))
    parser = argparse.ArgumentParser()
    add_config_options(parser, Extended)
    args = parser.parse_args(["--widget-count", "7", "--mood", "wild", "--no-fused", "--lr", "0.01"])
    assert (args.widget_count, args.mood, args.fused, args.lr) == (7, "wild", False, 0.01)
    assert "how many widgets (default 3)" in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["--widget-count", "0"])


def test_every_run_writes_its_toml_and_is_repeatable_from_it(tmp_path, corpus):
    first = tmp_path / "a" / "run.npz"
    assert main(["train", "--data", str(corpus), "--checkpoint", str(first), *TINY, "--steps", "5", "--seed", "3",
                 "--lr", "0.02", "--cell", "gru", "--state-reset", "0.2", "--warmup", "2"]) == 0
    written = first.with_suffix(".toml")
    settings = read_config(written)
    assert settings["data"] == str(corpus.resolve()) and settings["cell"] == "gru" and settings["lr"] == 0.02
    assert set(settings) == {f.name for f in fields(TrainConfig)} | {"data"}

    again = tmp_path / "b" / "run.npz"  # nothing but the TOML: same data, same settings, same numbers
    assert main(["train", "--config", str(written), "--checkpoint", str(again), "--quiet", "--no-plot"]) == 0
    params_a, meta_a, _ = load_checkpoint(first)
    params_b, meta_b, _ = load_checkpoint(again)
    assert meta_a["config"] == meta_b["config"] and meta_a["history"]["loss"] == meta_b["history"]["loss"]
    for name in params_a:
        np.testing.assert_array_equal(params_a[name], params_b[name])
    assert again.with_suffix(".toml").read_text() == written.read_text()


def test_config_file_then_explicit_options(tmp_path, corpus, capsys):
    cfg = tmp_path / "mine.toml"
    cfg.write_text(f'data = "{corpus}"\nhidden_size = 20\nsteps = 4\ncell = "lstm"\n', encoding="utf-8")
    assert main(["train", "--config", str(cfg), "--preset", "gru", "--hidden-size", "9", "--print-config"]) == 0
    printed = tomllib.loads(capsys.readouterr().out)
    assert printed["hidden_size"] == 9 and printed["cell"] == "lstm" and printed["steps"] == 4  # option > file
    assert printed["seq_len"] == 64 and printed["dropout"] == 0.2  # file > preset
    assert printed["data"] == str(corpus.resolve())


@pytest.mark.parametrize("content,message", [
    ("hidden_sise = 3\n", "unknown setting 'hidden_sise'"),
    ("warmup = \n", "not valid TOML"),
    ("warmup = -1\n", "warmup must be a non-negative integer"),
    ("warmup = [1, 2]\n", "warmup must be a plain value"),
])
def test_bad_config_files_exit_2_with_one_line(tmp_path, corpus, capsys, content, message):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(content, encoding="utf-8")
    ck = tmp_path / "ck.npz"
    assert main(["train", "--data", str(corpus), "--config", str(cfg), "--checkpoint", str(ck), *TINY]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not ck.exists() and not ck.with_suffix(".toml").exists()


def test_presets_are_toml_files_users_can_copy(tmp_path, capsys):
    assert sorted(PRESETS) == ["best", "gru", "lstm", "rnn"]
    for name in PRESETS:
        path = PRESET_DIR / f"{name}.toml"
        assert preset_settings(name) == tomllib.loads(path.read_text(encoding="utf-8"))
        copy = tmp_path / f"{name}.toml"
        copy.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
        assert main(["train", "--config", str(copy), "--print-config"]) == 0
        via_copy = capsys.readouterr().out
        assert main(["train", "--preset", name, "--print-config"]) == 0
        assert capsys.readouterr().out == via_copy


def test_nothing_to_train_writes_nothing(tmp_path, corpus):
    ck = tmp_path / "ck.npz"
    assert main(["train", "--data", str(corpus), "--checkpoint", str(ck), *TINY, "--steps", "0"]) == 0
    assert not ck.exists() and not ck.with_suffix(".toml").exists()
