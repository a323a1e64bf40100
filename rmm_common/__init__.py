"""Small pieces shared by the agent, the server and the CLI; no third-party dependencies."""
