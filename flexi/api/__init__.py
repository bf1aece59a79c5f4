"""HTTP dialects. Each router only translates into `flexi.engine.types`; nothing below knows the dialect."""
