"""Run the agent as a system service: systemd, a Windows service, or a launchd daemon.

Kept free of heavy imports: the run loop imports `sdnotify` from here on every host.
"""
