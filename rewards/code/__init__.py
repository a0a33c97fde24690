"""The code reward (R1's "compiler + test cases"): execution.py (the `code` reward: run a completion's program
against its tests in the sandbox), cases.py (reading tests from a row, extracting the program, comparing outputs),
harness.py (the test harness that runs inside the sandbox). The sandbox itself is the top-level `sandbox` package."""
