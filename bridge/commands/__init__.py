"""The `bridge` command line: serve, check, init, formats, prelabel, check URL."""
