"""`flexi catalog [FAMILY] [--json]`: the shipped catalogue of open-weight model families, with the
installed models of each (read from the local model store, no server needed). Texts: `flexi.i18n.catalog`.
"""

from __future__ import annotations

import json
import logging
from typing import Optional

import typer

from flexi.catalog import DIMENSIONS, Family, installed_by_family, load_catalog
from flexi.cli.errors import fail
from flexi.cli.ui import print_table
from flexi.i18n import env_locale, t

log = logging.getLogger(__name__)


def _installed() -> dict[str, list[str]]:
    """Installed models per family; an unreadable store only means no matches."""
    from flexi.config import load_settings
    from flexi.store.store import ModelStore

    try:
        records = ModelStore(load_settings().models_dir).list()
    except Exception as exc:  # noqa: BLE001 - the catalogue is still worth showing without the store
        log.warning("cannot read the model store: %s", exc)
        return {}
    return installed_by_family((r.name, r.info) for r in records if not r.external)


def score_text(family: Family) -> str:
    values = {"open": family.open_count, "total": len(DIMENSIONS), "unknown": family.unknown_count}
    return t("catalog_score_unknown", **values) if family.unknown_count else t("catalog_score", **values)


def _context(family: Family) -> str:
    return f"{family.context_length // 1024}k" if family.context_length else t("catalog_none")


def catalog(family: Optional[str] = typer.Argument(None, help="Show one family in detail (id or name)."),
            as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Open-weight model families: sizes, licence, context, openness, German, installed models."""
    cat = load_catalog()
    installed = _installed()
    locale = env_locale()
    if family is not None:
        chosen = cat.get(family)
        if chosen is None:
            raise fail(t("catalog_unknown_family", name=family, known=", ".join(f.id for f in cat.families)))
        if as_json:
            typer.echo(json.dumps({**chosen.to_dict(), "installed": installed.get(chosen.id, []),
                                   "framework": cat.framework}, ensure_ascii=False, indent=2))
            return
        _detail(chosen, installed.get(chosen.id, []), locale)
        _attribution(cat.framework)
        return
    if as_json:
        typer.echo(json.dumps({"framework": cat.framework,
                               "families": [{**f.to_dict(), "installed": installed.get(f.id, [])} for f in cat.families]},
                              ensure_ascii=False, indent=2))
        return
    headers = [t(f"catalog_col_{c}") for c in ("family", "sizes", "licence", "context", "openness", "german", "installed")]
    rows = [[f.name, ", ".join(f.sizes), f.licence_id, _context(f), score_text(f), f.note(locale),
             ", ".join(installed.get(f.id, [])) or t("catalog_none")] for f in cat.families]
    print_table(headers, rows)
    _attribution(cat.framework)


def _detail(family: Family, installed: list[str], locale: str) -> None:
    lines = [
        f"{family.name} ({family.id})",
        f"  {t('catalog_field_organization')}: {family.organization}",
        f"  {t('catalog_field_sizes')}: {', '.join(family.sizes)}",
        f"  {t('catalog_field_context')}: {family.context_length or t('catalog_none')}",
        f"  {t('catalog_field_licence')}: {family.licence} <{family.licence_url}>",
        f"  {t('catalog_field_languages')}: {', '.join(family.languages)}",
        f"  {t('catalog_field_german')}: {family.note(locale)}",
        f"  {t('catalog_field_installed')}: {', '.join(installed) or t('catalog_none')}",
        f"  {t('catalog_field_openness')}: {score_text(family)}",
    ]
    lines += [f"    {t('catalog_dim_' + d)}: {t('catalog_level_' + family.openness[d])}" for d in DIMENSIONS]
    basis = (t("catalog_basis_index", entry=family.openness_entry) if family.openness_basis == "index"
             else t("catalog_basis_flexi"))
    lines.append(f"    ({basis})")
    lines.append(f"  {t('catalog_field_sources')}:")
    lines += [f"    {url}" for url in family.sources]
    typer.echo("\n".join(lines))


def _attribution(framework: dict[str, str]) -> None:
    typer.echo(t("catalog_attribution", name=framework["name"], url=framework.get("origin", framework["url"]),
                 licence=framework.get("data_licence", "")))
