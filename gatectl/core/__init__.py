"""Floor 0: helpers every floor may use (escaped text for logs, paths, argument types); they know nothing of gates."""
