"""What is true of the Piriod API, with no Singer code: schema, errors, retries, pages, client.

``tap_piriod`` and ``target_piriod`` are thin Singer glue over this package; neither
imports the other, and nothing here imports ``singer_sdk``.
"""
