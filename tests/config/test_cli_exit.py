"""A launched rank that finished its run leaves with os._exit (rl/config/cli.py `exit_without_teardown`): DeepSpeed
keeps gloo process groups alive past destroy_process_group, and their destruction during interpreter finalization
sometimes aborted rank 1 of the ZeRO-3 SFT launch after all its files were written (tests/e2e/test_real_chain.py,
seen in CI). These pin when the shortcut is taken and when it is not."""
import pytest

from rl.config import cli


class Exited(Exception):
    pass


@pytest.fixture
def exits(monkeypatch):
    codes = []

    def fake_exit(code):
        codes.append(code)
        raise Exited

    monkeypatch.setattr(cli.os, "_exit", fake_exit)
    return codes


@pytest.mark.parametrize("world_size, expected", [("2", [0]), ("8", [0]), ("1", []), (None, [])])
def test_a_finished_launched_rank_skips_finalization(monkeypatch, exits, world_size, expected):
    if world_size is None:
        monkeypatch.delenv("WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("WORLD_SIZE", world_size)
    ran = []
    try:
        cli.run_cli(lambda: ran.append(1), errors=(ValueError,))
    except Exited:
        pass
    assert ran == [1]          # main ran in full first
    assert exits == expected   # then os._exit(0) only where more than one process was launched


def test_output_is_flushed_before_the_exit(monkeypatch, exits, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(Exited):
        cli.run_cli(lambda: print("[sft] the last line"), errors=(ValueError,))
    assert capsys.readouterr().out == "[sft] the last line\n"


@pytest.mark.parametrize("error, code", [(ValueError("bad recipe"), 2), (KeyError("worker died"), 1)])
def test_a_failed_rank_exits_with_its_code_not_through_the_shortcut(monkeypatch, exits, capsys, error, code):
    monkeypatch.setenv("WORLD_SIZE", "2")

    def main():
        raise error

    with pytest.raises(SystemExit) as e:
        cli.run_cli(main, errors=(ValueError,), failures=(KeyError,))
    assert e.value.code == code
    assert exits == []
    assert capsys.readouterr().err.startswith("error: ")
