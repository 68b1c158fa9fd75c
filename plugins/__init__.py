"""grokbench's first-party plugins (installed as ``grokbench_plugins``).

Each module is a plugin registered through the ``grokbench`` entry-point group in
pyproject.toml, exactly like a third-party plugin; grokbench's core never imports them.
"""
