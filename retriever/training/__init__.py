"""Training loops: learned product quantization (JPQ-style and distilled)."""
