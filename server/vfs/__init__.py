"""The project's virtual file system: path rules, content types, and the file service."""
