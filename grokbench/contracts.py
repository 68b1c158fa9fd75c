"""The classes plugins subclass, under the name plugin authors import (defined in :mod:`grokbench.plugin.contracts`)."""

from grokbench.plugin.contracts import *  # noqa: F403
