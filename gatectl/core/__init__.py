"""Floor 0 helpers every floor may use: the error base, the health protocol, escaped text for
logs, the key parser, paths, argument types. They know nothing of gates."""
