"""Recording runs while they train: live writes, checkpoint files, loggers, interrupts, recovery, resume."""
