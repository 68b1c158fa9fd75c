"""The results store (SQLite) and its migrations."""
