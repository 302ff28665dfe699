"""Adversarial replay cases: one function per case, each run in its own capped subprocess."""
