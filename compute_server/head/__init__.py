"""Head models with FLAME's parameter structure: the built-in open head and FLAME files."""
