"""Scoring models against people: RSA, odd-one-out accuracy, statistics, ceilings, baselines."""
