"""Server-sent events: a pure decoder, and an observer that turns a stream into a verdict."""
