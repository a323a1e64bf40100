"""Storage tests that hold the two databases to the same behaviour."""
