"""The private APIs of libraries that tickhouse uses, each library's behind one module here, so
an upgrade that changes them breaks one import and one test
(tickhouse_dagster_tests/compat/test_private_apis.py), not a run."""
