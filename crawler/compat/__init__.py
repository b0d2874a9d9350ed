"""Private internals of other libraries, one module per library (see each docstring)."""
