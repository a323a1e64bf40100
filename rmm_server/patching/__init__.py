"""Patching on the server: policy and approval, per-agent state, windows and rollout.

model.py holds the shared records (what the server knows of an update, the settings a patch
policy gives one agent, a decision and why); policy.py reads PatchPolicy documents; approval.py
decides one update for one agent.
"""
