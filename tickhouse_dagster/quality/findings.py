"""What a quality rule found: a count and a few examples a person can act on."""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_EXAMPLES = 20


@dataclass
class Findings:
    rule: str
    rows_checked: int = 0
    count: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.count == 0

    def add(self, example: str, count: int = 1) -> None:
        self.count += count
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(example)

    def summary(self) -> str:
        if self.passed:
            return f"{self.rule}: {self.rows_checked} rows, no findings"
        return f"{self.rule}: {self.count} finding(s) in {self.rows_checked} rows"
