"""The warm run launcher's last warm-up (tickhouse_dagster.launcher): once the libraries and the
code location are imported, their objects are frozen (compat.frozen_heap), so no run forked from
the warm interpreter walks them in a garbage collection. Collected first: this interpreter
starts once per code change, not once per run."""

import gc

from tickhouse_dagster.compat.frozen_heap import freeze_long_lived

gc.collect()
freeze_long_lived()
