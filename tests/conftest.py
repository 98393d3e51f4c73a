"""Fixtures shared by every test directory (each fixture module is owned by one part)."""

pytest_plugins = [
    "tests.fixtures.sqlite",
    "tests.fixtures.etcd",
    "tests.fixtures.kube",
    "tests.fixtures.backends",
    "tests.fixtures.netns",
]
