"""Foundation: errors, confined file access, locks, digests, keys, the lock file, typed jobs, datasets. Imports nothing else of olivepipe."""
