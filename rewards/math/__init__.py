"""Rewards on the correctness of a math answer: accuracy.py (`accuracy`, `boxed_format`: math-verify with
deadlines), hedges.py (hedged answers never earn accuracy), normalize.py (answer text cleaning), countdown.py (the
Countdown arithmetic puzzle)."""
