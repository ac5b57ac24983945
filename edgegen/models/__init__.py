"""Model families. One file per family; ``FAMILIES`` maps a GGUF architecture to its module."""
