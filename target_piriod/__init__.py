"""target-piriod: a Singer target that upserts customers into Piriod."""
