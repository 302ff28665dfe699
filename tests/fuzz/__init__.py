"""Fuzzing support: mutators of valid inputs, the documented outcomes, coverage-guided targets.

The mutators take every decision from a :class:`~fuzz.choice.Chooser`, so one mutator serves
two drivers: Hypothesis (``tests/test_fuzz_*.py``, with shrinking) and a seeded
``random.Random`` (bulk byte-level runs). The coverage-guided targets ``tests/fuzz/fuzz_*.py``
(atheris) feed raw bytes to the readers, or their bytes to the Hypothesis properties.
"""
