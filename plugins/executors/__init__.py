"""Executor plugins: the inline and process executors, and Ray with its watchdog."""
