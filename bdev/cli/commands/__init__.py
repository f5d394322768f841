"""The ``bdev`` subcommands, one small module per group (each imports the API lazily)."""
