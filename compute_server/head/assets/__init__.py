"""Data files of the head models (the generated built-in head, ``builtin_head.npz``)."""
