"""grokbench's version (the package's, read by pyproject.toml at build time) and its plugin-contract version.

The contract version is one integer, raised by one with every change to what a plugin may rely on or must
provide (hooks, base classes, capabilities, checks): a plugin declares the range it supports as a version
specifier over it (``grokbench_contract = ">=4"``), so it needs no minor/patch distinction. CHANGELOG.md
lists each contract's changes.
"""

__version__ = "0.1.0"

#: the plugin contract this grokbench implements (see CHANGELOG.md)
CONTRACT = 4
