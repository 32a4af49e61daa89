"""The bottom layer: the data contract (every table's columns, once) and SQL over Arrow. It
imports nothing of the project; every other layer may import it."""
