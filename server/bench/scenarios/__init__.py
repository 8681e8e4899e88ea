"""The bench scenarios: fanout, idle, workflow, http. Each is ``async def run(ctx, options)
-> dict`` returning one JSON-able result (the shape the shared load generator prints)."""
