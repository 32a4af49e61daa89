"""The one error a bad tick file produces: it names the file, the record, the field and why."""

from __future__ import annotations


class TickFileError(ValueError):
    """A tick file that cannot be ingested. Permanent: the same bytes fail the same way again."""

    def __init__(
        self,
        source_file: str,
        reason: str,
        *,
        record: int | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.source_file = source_file
        self.reason = reason
        self.record = record
        self.line = line
        self.field = field
        super().__init__(self._message())

    def _message(self) -> str:
        where = [self.source_file]
        if self.record is not None:
            where.append(f"record {self.record}")
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.field is not None:
            where.append(f"field {self.field}")
        return f"{', '.join(where)}: {self.reason}"
