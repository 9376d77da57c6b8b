"""On disk: atomic writes, checkpoints, run directories and their metrics log."""
