"""Converters: Hugging Face checkpoints to GGUF (and later ONNX)."""
