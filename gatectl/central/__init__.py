"""The centre: the registry every device trusts, the ingest of every device's events, and
`gatectl central`, the operator's and technician's tool over both."""
