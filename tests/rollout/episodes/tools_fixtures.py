"""Tools used by the tests (loaded by name, as a recipe names them: `tests.rollout.episodes.tools_fixtures:multiply`)."""
import time


def multiply(a: int, b: int) -> int:
    """Multiply two integers.

    Args:
        a: the first factor
        b: the second factor
    """
    return a * b


def hang(seconds: float) -> str:
    """Sleep, then answer.

    Args:
        seconds: how long to sleep
    """
    time.sleep(seconds)
    return "woke up"


def explode(x: int) -> str:
    """Always fails.

    Args:
        x: ignored
    """
    raise RuntimeError("boom")


def undocumented(x):
    return x


class CheckTwice:
    """A step-style environment: after the first turn it asks the policy to check its answer, then ends."""
    tools = []

    def reset(self, row):
        self.turns = 0
        return None

    def step(self, turn):
        from rl.rollout.episodes.environments import StepResult
        self.turns += 1
        if self.turns == 1:
            return StepResult([{"role": "user", "content": "check"}], info={"checks": 1.0})
        return StepResult(done=True, reward=1.0)



def text_checksum(completions, **kwargs):
    """A reward that varies on the micro model (random weights, episodes of equal length): the sum of the
    characters' code points mod 11, / 10 ('ab' -> (97 + 98) % 11 / 10 = 0.8), so the equivalence tests
    (tests/stages/test_grpo_tools_async.py) compare non-zero losses and gradients."""
    return [sum(map(ord, c)) % 11 / 10 for c in completions]
