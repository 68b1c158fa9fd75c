"""Pytest fixtures and helpers for plugin authors, under the name they import (defined in
:mod:`grokbench.authoring.testing`)."""

from grokbench.authoring.testing import *  # noqa: F403
