"""Locally generated models: no hub download is possible on the target machines."""
