"""Training: the loop as a generator of events, evaluation, the schedule, distributed runs, memory and threads."""
