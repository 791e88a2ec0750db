"""The `headsplat` command line."""
