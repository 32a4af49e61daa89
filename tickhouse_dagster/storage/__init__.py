"""Where data lives: the landing store (raw XML), the Iceberg lakehouse and the parse staging area."""
