"""The genome's live service: workers in the jail, the HTTP front, rollouts' controls.

docs/service.md is the map. ``control.py`` is the seam between the service (which runs
workers and routes requests) and the Deployer (which decides weights and promotions).
"""
