"""The add-on's operators, one module per group; registration.py collects their classes."""
