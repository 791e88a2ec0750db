"""The data directory: avatars and job records, written atomically."""
