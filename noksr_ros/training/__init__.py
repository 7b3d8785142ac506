"""Training of the NoKSR model on simulated drives."""
