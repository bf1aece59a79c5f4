// Administration: energy, cost and CO2 (GET /admin/energy) with trends over days and weeks, energy per model
// and the peak of concurrent requests per hour of day. The charts are SVG rendered by the server from the
// stored hourly aggregates (/admin/energy/chart.svg), like the usage charts; no chart library here.
import { api } from "./api.js";
import { h, clear } from "./dom.js";
import { t, fmtNumber, locale } from "./i18n.js";
import { table } from "./admin_parts.js";

const DAYS = 30;

export async function energyTab(body) {
  const lang = locale();
  const charts = [["day", DAYS, t("chart_energy_day")], ["week", 120, t("chart_energy_week")],
    ["model", DAYS, t("chart_energy_model")], ["hour", DAYS, t("chart_energy_hour")]].map(([view, days, alt]) =>
    h("figure", {}, h("img", { src: `/admin/energy/chart.svg?view=${view}&days=${days}&lang=${lang}`,
      alt, width: "640", height: "260", loading: "lazy" })));
  const report = await api(`/admin/energy?days=${DAYS}&by=model,course`);
  const total = report.total || {};
  const rows = (report.rows || []).map((r) => h("tr", {},
    h("td", {}, r.model === "idle" ? t("energy_idle") : String(r.model)), h("td", {}, r.course ?? t("energy_no_course")),
    h("td", {}, fmtNumber(r.kwh, 3)), h("td", {}, fmtNumber(r.eur, 2)), h("td", {}, fmtNumber(r.kg_co2, 3)),
    h("td", {}, fmtNumber(r.measured_kwh, 3)), h("td", {}, fmtNumber(r.estimated_kwh, 3)),
    h("td", {}, fmtNumber(r.busy_seconds / 3600, 2))));
  const intro = h("p", {}, t("energy_intro", { days: DAYS, kwh: fmtNumber(total.kwh, 3), eur: fmtNumber(total.eur, 2),
    co2: fmtNumber(total.kg_co2, 3), price: fmtNumber(report.price_eur_per_kwh, 2), factor: fmtNumber(report.co2_g_per_kwh),
    estimated: fmtNumber(total.estimated_kwh, 3) }));
  const notes = [report.sampling ? null : h("p", { class: "hint" }, t("energy_off")),
    total.estimated ? h("p", { class: "hint" }, t("energy_estimated_note")) : null].filter(Boolean);
  clear(body, intro, ...notes, h("div", { class: "charts" }, charts), h("h2", {}, t("energy_per_model")),
    table([t("model"), t("course"), t("energy_kwh"), t("energy_eur"), t("energy_co2"), t("energy_measured"), t("energy_estimated"),
      t("energy_busy")], rows, t("energy_per_model")));
}
