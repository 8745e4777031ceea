"""Every `micrornn COMMAND --help` reads as written: no escaped '%%' left over from argparse formatting."""
import pytest

from micrornn.cli import COMMANDS, main


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_no_doubled_percent_signs(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.strip() and "%%" not in out, out
