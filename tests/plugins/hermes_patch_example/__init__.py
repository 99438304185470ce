"""A tiny third-party catalog of hermes-patch patches (the test suite's entry point example)."""
