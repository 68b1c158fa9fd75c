"""The compiled parts of grokbench, two small plain-C extensions of the first-party plugins: the quadratic
network's fused step (plugins/models/_fused_quadratic.c) and Adam's fused update (plugins/methods/_fused_adam.c),
each built beside its Python wrapper and sharing plugins/_clones.h.

Everything else is configured in pyproject.toml. The extensions are optional: without a C compiler the install
still succeeds and the plugins run their reference torch paths (plugins/compiled.py says so once per extension).
No -march=native: the kernels pick AVX-512, AVX2 or generic code at run time (GCC's target_clones). No
-ffp-contract: a multiply and an add are fused only where the C says fma(), so the numbers do not depend on the
compiler's choices."""

import sys

from setuptools import Extension, setup

unix = sys.platform != "win32"


def extension(module: str, libraries: list[str]) -> Extension:
    """The extension ``grokbench_plugins.<module>`` (``module`` as ``models._fused_quadratic``), built from
    plugins/<module path>.c."""
    return Extension(
        f"grokbench_plugins.{module}",
        [f"plugins/{module.replace('.', '/')}.c"],
        include_dirs=["plugins"],
        depends=["plugins/_clones.h"],
        extra_compile_args=["-O3", "-ffp-contract=off"] if unix else ["/O2", "/fp:precise"],
        extra_link_args=["-pthread"] if unix else [],
        libraries=libraries if unix else [],
        optional=True,
    )


setup(ext_modules=[extension("models._fused_quadratic", []), extension("methods._fused_adam", ["m"])])
