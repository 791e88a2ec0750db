"""Fitting the head model to portraits (single and multi-image) and tracking videos."""
