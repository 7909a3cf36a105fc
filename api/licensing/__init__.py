"""Ed25519-signed license JWTs: issuing (``issue``), offline verification (``verify``)."""
