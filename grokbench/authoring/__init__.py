"""For plugin authors: pytest fixtures, the plugin scaffold, and the generated contract reference."""
