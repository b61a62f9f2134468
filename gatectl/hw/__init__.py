"""What gatectl drives: relay boards (the interface, an in-memory board, the serial dialects in
`serial/`), named outputs, the announcement display."""
