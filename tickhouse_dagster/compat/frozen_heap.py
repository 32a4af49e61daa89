"""Python's cyclic garbage collector told to leave the imported libraries alone.

A run's process holds the objects of every module it imported (Dagster, pyiceberg, pandas,
polars, pandera, DuckDB, the code location: about 300,000 in `tickhouse ingest`, more in the warm
interpreter), and they live as long as the process does. A full (generation 2) collection walks
every one of them with the GIL held: 0.20–0.25 s, about once per 100k-tick file, in the middle of
its ingest (measured in decision 1610). `gc.freeze()` moves the objects that exist now to the
permanent generation, which collections never walk; objects made afterwards are collected as
before. A process forked later inherits the frozen generation, so a forked run walks only what it
made itself. It lives beside the warm-ups because the warm run launcher's interpreter imports
`compat.frozen_heap_warmup`, which calls it, last.
"""

from __future__ import annotations

import gc


def freeze_long_lived() -> None:
    """Exempt every object that exists now from later collections. Garbage that exists now is
    kept with them (cycles left by imports: a few hundred objects); collecting it first costs a
    full collection, worth it only where it is paid once, as in the warm interpreter."""
    gc.freeze()
