"""PyInstaller entry script: the ``stretto`` command (server.cli.main.console_main)."""

from server.cli.main import console_main

if __name__ == "__main__":
    console_main()
