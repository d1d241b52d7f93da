"""The seam between the core and the adapters: what an adapter implements, how adapters are found, the one answer path."""
