"""stretto: a workflow-and-streaming server for AI-assisted project apps.

Importing the package has no side effects (``server.bench``, the load-test client, depends on
it). trio-asyncio must be imported before any asyncio-using library (asyncpg, httpx,
google-genai): the modules that lead to them (``server.store.factory``, ``server.ai.factory``,
``server.runtime.serve``) import it first.
"""

__version__ = "0.1.0"
