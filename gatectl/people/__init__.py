"""Who may pass: the gate's directory of residents and watchlist entries, and enrollment."""
