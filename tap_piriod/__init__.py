"""tap-piriod: a Singer tap for Piriod customers, incremental by their ``updated`` time."""
