"""Energy and cost (issue 14): power sources, the sampler that integrates them into energy and attributes it to
models and courses, the stored hourly aggregates, and the reports (kWh, €, CO2) built from them."""
