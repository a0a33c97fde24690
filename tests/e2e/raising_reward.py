"""A broken user reward for tests/e2e/test_run_dirs.py: it raises on every completion."""


def boom(completions, **columns):
    raise ZeroDivisionError("my reward divided by zero")
