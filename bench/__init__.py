"""modelgate benchmarks: ``python -m bench`` / ``make bench``."""
