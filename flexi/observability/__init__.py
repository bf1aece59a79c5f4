"""What Flexi reports about itself to operators (Prometheus metrics)."""
