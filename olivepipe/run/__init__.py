"""Running one job anywhere: the node runtime, worker processes and the executors."""
