// What Flexi measured for a model (GET /ui/models → measured: the newest stored `flexi bench|eval|safety|
// quant-report --save` summaries): quality, speed and the safety probes' pass rate, for the picker and the
// admin models tab. Absent figures are left out, never shown as zero.
import { t, fmtNumber } from "./i18n.js";

const percent = (value) => `${fmtNumber(100 * value, 0)} %`;

export function measuredFacts(measured) {
  const parts = [];
  const evalSummary = measured?.eval?.summary;
  if (evalSummary?.average != null) parts.push(t("measured_quality", { score: fmtNumber(evalSummary.average, 2) }));
  const bench = measured?.bench?.summary;
  if (bench?.tg_tokens_per_s != null) parts.push(t("measured_speed", { rate: fmtNumber(bench.tg_tokens_per_s, 0) }));
  const safety = measured?.safety?.summary;
  if (safety?.pass_rate != null) parts.push(t("measured_safety", { rate: percent(safety.pass_rate) }));
  return parts;
}
