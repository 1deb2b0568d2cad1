"""One module per CLI command: the runs that assemble data, algorithms and the trainer."""
