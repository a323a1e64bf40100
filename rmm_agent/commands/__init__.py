"""Remote commands: the signed command stream, its checks and the agent's own history."""
