"""Metric plugins: parameter norms, and the kernel-regime and feature metrics (NTK drift, alignment, Fourier)."""
