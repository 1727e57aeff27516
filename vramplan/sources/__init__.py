"""Model sources outside the catalog: a GGUF file's header and a Hugging Face repo's config and headers.

- `gguf_reader`: a strict pure-Python reader of the GGUF header (metadata and tensor infos).
- `gguf_model`: a GGUF header -> `Architecture`, `Variant` and `Quant` with the file's exact tensor bytes.
- `hf`: a Hugging Face repo -> the same, from `config.json` and the safetensors headers
  (huggingface_hub is imported only inside the functions that use it).

Nothing is imported here, so `import vramplan.sources.gguf_reader` stays cheap.
"""
