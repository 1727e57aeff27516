"""vramplan: GPU memory planning for DeepSeek-R1 variants."""

__version__ = "0.1.0"
