"""The catalogue of open-weight model families (issue 16, part 1).

Why data and not code: sizes, licences and openness ratings change with every release, and each fact
must carry its source. `families.toml` (shipped in the package) holds them; `families.py` loads and
validates it into typed records, `matching.py` links installed models to a family by their GGUF
metadata. Openness follows Liesenfeld & Dingemanse (European Open Source AI Index); the attribution is
in the data file and in `Catalog.framework`.
"""

from flexi.catalog.families import (
           DIMENSIONS,
           LEVELS,
           Catalog,
           CatalogError,
           Family,
           load_catalog,
           parse_catalog,
)
from flexi.catalog.matching import FamilyMatch, installed_by_family, match_family

__all__ = ["DIMENSIONS", "LEVELS", "Catalog", "CatalogError", "Family", "FamilyMatch", "installed_by_family", "load_catalog",
           "match_family", "parse_catalog"]
