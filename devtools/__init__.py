"""For development, not the product: the HA simulator, local servers, the dev stack, docs.

Only the `dev`, `simulate` and `docs-reference` subcommands reach it (checked by `make lint`).
"""
