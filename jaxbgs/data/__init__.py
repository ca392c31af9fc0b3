"""Human odd-one-out data: trial designs, loading and similarity matrices."""
