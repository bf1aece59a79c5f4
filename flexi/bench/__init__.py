"""Load tests, model benchmarks and the model selection report (`flexi loadtest`, `flexi bench`, `flexi recommend`)."""
