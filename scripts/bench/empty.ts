// Intentionally empty: the reference for the cost of importing bun-daemon.
