"""Discrete-event fleet simulator: a vLLM-style engine model calibrated from Vidur's measured
H100 kernel times, driving the real router and scheduler through an injected clock and
fleet view."""
