"""Configuration: a run's resolved config, suite files and benchmark files, each checked before anything runs."""
