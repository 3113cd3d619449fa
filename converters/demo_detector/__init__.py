"""The demo detector: a small anchor-free CNN trained on the synthetic shapes scene."""
