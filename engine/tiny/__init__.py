"""Tiny random models built in code, saved like the real ones, for tests and CPU smoke runs."""
