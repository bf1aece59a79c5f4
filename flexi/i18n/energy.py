"""Texts of `flexi energy` (the energy, cost and CO2 report), in German and English."""

from __future__ import annotations

ENTRIES: dict[str, dict[str, str]] = {
    "energy_col_day": {"en": "DAY", "de": "TAG"},
    "energy_col_week": {"en": "WEEK", "de": "WOCHE"},
    "energy_col_model": {"en": "MODEL", "de": "MODELL"},
    "energy_col_course": {"en": "COURSE", "de": "KURS"},
    "energy_col_kwh": {"en": "KWH", "de": "KWH"},
    "energy_col_eur": {"en": "EUR", "de": "EUR"},
    "energy_col_co2": {"en": "KG CO2", "de": "KG CO2"},
    "energy_col_estimated": {"en": "ESTIMATED KWH", "de": "GESCHÄTZT KWH"},
    "energy_col_busy": {"en": "BUSY H", "de": "BELEGT H"},
    "energy_idle": {"en": "idle", "de": "Leerlauf"},
    "energy_no_course": {"en": "(no course)", "de": "(ohne Kurs)"},
    "energy_total": {
        "en": "total {kwh} kWh, {eur} €, {co2} kg CO2 from {since} to {until} ({price} €/kWh, {factor} g CO2/kWh)",
        "de": "gesamt {kwh} kWh, {eur} €, {co2} kg CO2 von {since} bis {until} ({price} €/kWh, {factor} g CO2/kWh)",
    },
    "energy_estimated_note": {
        "en": "{kwh} kWh of it estimated from FLEXI_ENERGY_IDLE_WATTS / FLEXI_ENERGY_BUSY_WATTS (no power meter readable)",
        "de": "davon {kwh} kWh geschätzt aus FLEXI_ENERGY_IDLE_WATTS / FLEXI_ENERGY_BUSY_WATTS (kein Strommesser lesbar)",
    },
    "energy_none": {
        "en": "no energy figures stored for this period (a running server writes them every few minutes)",
        "de": "für diesen Zeitraum sind keine Energiewerte gespeichert (ein laufender Server schreibt sie alle paar Minuten)",
    },
    "energy_bad_by": {"en": "--by must be day, week, model or course", "de": "--by muss day, week, model oder course sein"},
}
