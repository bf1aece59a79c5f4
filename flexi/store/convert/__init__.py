"""Model conversion into GGUF (what `flexi create FROM <directory>` runs; no torch needed)."""

from .bert import ConversionError, Converted, convert_bert, is_model_dir

__all__ = ["ConversionError", "Converted", "convert_bert", "is_model_dir"]
