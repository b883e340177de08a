"""End-to-end workflow: the compared methods, presets, the pipeline and its report."""
