"""SQL store: tenants, API keys, workflows and their AEGs, the usage ledger."""
