"""Reports from the store: run tables, leaderboards, figures, scaling fits, baselines, benchmark scores, pages."""
