"""The reference-data records of committed landing files (storage.reference_lineage), written
behind the run instead of in its way.

A record is a commit to a table of its own that nothing else in the run reads: waiting for it
held up every ticks commit by one more round of catalog and object-store latency (≈0.3 s of a
lone file's run on the local stack), before the file's verification and its bars could go on. So
records are written on one background thread, one at a time and in commit order (two records
never conflict with each other), while the run goes on, and `wait` is called once the run's
other work is done. A record still follows the ticks it describes, so a crash between the two
leaves the files reported as unchecked for stale reference data, never wrongly current; a
failed record fails the run, naming its files (their ticks are committed and stay).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType

from tickhouse_dagster.market.venues import Venue
from tickhouse_dagster.storage.commits import Commit
from tickhouse_dagster.storage.lakehouse import Lakehouse
from tickhouse_dagster.storage.reference_lineage import record_ticks_reference


class ReferenceRecordsFailed(Exception):
    """Files whose ticks were committed but whose reference-data record was not written."""

    def __init__(self, failures: Sequence[tuple[Sequence[str], BaseException]]) -> None:
        self.keys = [key for keys, _ in failures for key in keys]
        reasons = "; ".join(
            f"{', '.join(keys)}: {type(error).__name__}: {error}" for keys, error in failures
        )
        super().__init__(
            f"the ticks of {len(self.keys)} landing file(s) were committed, but the record of "
            f"the reference data they were parsed under was not written ({reasons}); "
            "`tickhouse ingest --all KEY…` ingests them again and writes it"
        )


class ReferenceRecords:
    """Ticks reference records, written in the background in the order asked (a context
    manager: leaving it waits for them)."""

    def __init__(self, house: Lakehouse, venues: Mapping[str, Venue]) -> None:
        self.house, self.venues = house, venues
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reference-records")
        self._pending: list[tuple[list[str], Future[Commit | None]]] = []

    def record_ticks(self, files: Mapping[str, Sequence[str]]) -> None:
        """After the ticks of `files` (landing key → the venues its rows name) committed."""
        if files:
            future = self._pool.submit(record_ticks_reference, self.house, files, self.venues)
            self._pending.append((list(files), future))

    def wait(self) -> None:
        """Until every record asked for is written; raises ReferenceRecordsFailed naming the
        files of each record that failed (after waiting for all of them)."""
        pending, self._pending = self._pending, []
        failures: list[tuple[Sequence[str], BaseException]] = []
        for keys, future in pending:
            error = future.exception()
            if error is not None:
                failures.append((keys, error))
        if failures:
            raise ReferenceRecordsFailed(failures)

    def __enter__(self) -> ReferenceRecords:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if error is None:
                self.wait()
        finally:
            # On an error the run is failing anyway: the records asked for are still written
            # (they describe committed ticks), but a failure among them must not hide `error`.
            self._pool.shutdown(wait=True)
