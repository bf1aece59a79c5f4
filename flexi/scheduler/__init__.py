"""Which model is loaded where: runners, keep_alive timers, eviction, (later) queues and fairness."""
