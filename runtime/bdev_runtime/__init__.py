"""bdev's runtime: what runs on top of the backends (templates now; start/stop later)."""
