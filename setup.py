"""The one compiled part of grokbench: the quadratic network's fused step (plugins/_fused_quadratic.c, plain C).

Everything else is configured in pyproject.toml. The extension is optional: without a C compiler the install
still succeeds and the quadratic model runs its reference torch path (plugins/fused_quadratic.py says so once).
No -march=native: the kernels pick AVX-512, AVX2 or generic code at run time (GCC's target_clones)."""

import sys

from setuptools import Extension, setup

unix = sys.platform != "win32"
setup(
    ext_modules=[
        Extension(
            "grokbench_plugins._fused_quadratic",
            ["plugins/_fused_quadratic.c"],
            extra_compile_args=["-O3", "-ffp-contract=off"] if unix else ["/O2"],
            extra_link_args=["-pthread"] if unix else [],
            optional=True,
        )
    ]
)
