"""Load tests and model benchmarks (`flexi loadtest`)."""
