"""One module per platform; each speaks its platform's dialect over the core in `bridge`."""
