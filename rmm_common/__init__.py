"""Small pieces shared by the agent, the server and the CLI; no third-party dependencies."""

# The release of all three, kept in step with pyproject.toml by tests/packaging; a constant,
# because reading the installed metadata at start-up costs the agent about 1 MB of memory and
# 40 ms on every host.
__version__ = "0.1.0"
