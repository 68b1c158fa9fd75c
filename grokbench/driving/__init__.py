"""Driving many runs: the suite driver over executor plugins, and the benchmark runner."""
