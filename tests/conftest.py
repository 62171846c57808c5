"""Loads the shared fixtures (tests/fixtures/): test modules import helpers from there, never from here."""

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.app",
    "tests.fixtures.browser",
    "tests.fixtures.mail",
]
