"""The benchmark harness behind `make bench`: generated tick XML, the project's parse, full ingest
and bar rebuild, the parse floor and peers, each measured in its own subprocess.

- `bench.data`: the cached, seeded data sets;
- `bench.measures`: one function per measurement (`python -m bench.measures NAME ...`);
- `bench.report`: the Markdown table, the targets and `docs/benchmarks.md`;
- `bench.run`: the command line (`python -m bench.run --help`).
"""
