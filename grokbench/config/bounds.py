"""How many runs one command may plan before it is refused (``--max-runs``)."""

from __future__ import annotations

from grokbench.errors import ConfigError

#: default of ``--max-runs``: the most runs one command plans before it is refused
MAX_RUNS = 10_000


def check_count(count: int, limit: int | None, what: str) -> None:
    """Refuse ``count`` runs above ``limit`` (``None``: the default, :data:`MAX_RUNS`), naming the count."""
    limit = MAX_RUNS if limit is None else limit
    if count > limit:
        raise ConfigError(
            f"{what} asks for {count:,} runs, more than the limit of {limit:,} (raise it with --max-runs N)"
        )
