"""stretto: a workflow-and-streaming server for AI-assisted project apps."""

# trio-asyncio patches asyncio's loop lookup: it must be imported before any other
# asyncio-using library (asyncpg, httpx, google-genai), so the package imports it first.
import trio_asyncio as _trio_asyncio  # noqa: F401

__version__ = "0.1.0"
