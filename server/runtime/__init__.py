"""Running the server process, one job per module.

- ``serve``: the lifecycle (preflight, services, background nursery, HTTP, shutdown).
- ``preflight``: checks that write nothing (listen address, data directory) and the
  one-line ``StartupError`` a bad start ends with.
- ``assembly``: opening the store and building the services; starting background services.
- ``http_server``: hypercorn's configuration and the HTTP task (the one place to hook it).
- ``shutdown``: signals and the drain sequence.
"""
