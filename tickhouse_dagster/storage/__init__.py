"""Where data lives: the landing store (raw XML), the Iceberg lakehouse, the parse staging."""
