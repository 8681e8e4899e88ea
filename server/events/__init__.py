"""The event model, SSE framing, the in-process hub and the PostgreSQL bus."""
