"""AnyCapEval: read the official benchmark format, caption, score content (key points) and style (0-4)."""
