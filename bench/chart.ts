/**
 * The benchmark chart: a dependency-free SVG with one group of horizontal bars per suite, one
 * bar per headline figure, each drawn against its goal (a dashed line). Each group has its own
 * scale per unit (ratios, seconds and MiB do not share an axis), from 0 to a little past the
 * largest of its values and goals in that unit. Green: the goal is met; red: missed; grey: no goal (report only).
 */
import type { Headline } from './suite.ts';

export interface ChartGroup {
  /** The suite's name, the group's title. */
  readonly suite: string;
  readonly headline: readonly Headline[];
}

export interface ChartOptions {
  readonly title?: string;
  /** A line under the title (date, machine). */
  readonly subtitle?: string;
}

const WIDTH = 1060;
const LABEL_W = 340;
const BAR_X = LABEL_W + 10;
const BAR_W = 460;
const ROW_H = 26;
const BAR_H = 16;
const GROUP_GAP = 14;
const TITLE_H = 22;

const COLORS = { met: '#2e7d32', missed: '#c62828', report: '#607d8b', goal: '#212121' };

/** Escapes text for an SVG text node or attribute value. */
export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

/** A value with its unit, as the chart prints it: "1.42×", "8.3 s", "61.2 MiB". */
export function formatValue(value: number, unit: Headline['unit']): string {
  if (!Number.isFinite(value)) return 'n/a';
  const n = Math.abs(value) >= 100 ? value.toFixed(0) : Math.abs(value) >= 10 ? value.toFixed(1) : value.toFixed(2);
  return unit === 'ratio' ? `${n}×` : `${n} ${unit}`;
}

/** Whether a headline meets its goal; null when it has none (or no finite value). */
export function meetsGoal(h: Headline): boolean | null {
  if (h.goal === undefined || !Number.isFinite(h.value)) return null;
  return h.goalKind === 'max' ? h.value <= h.goal : h.value >= h.goal;
}

const num = (v: number) => (Math.round(v * 10) / 10).toString();

/** The SVG document for `groups` (groups without headline figures are left out). */
export function buildChart(groups: readonly ChartGroup[], opts: ChartOptions = {}): string {
  const shown = groups.filter((g) => g.headline.length > 0);
  const parts: string[] = [];
  let y = 10;
  const title = opts.title ?? 'edu-plus benchmarks';
  parts.push(`<text x="10" y="${y + 16}" font-size="16" font-weight="bold">${escapeXml(title)}</text>`);
  y += 24;
  if (opts.subtitle) {
    parts.push(`<text x="10" y="${y + 12}" font-size="11" fill="#555">${escapeXml(opts.subtitle)}</text>`);
    y += 18;
  }
  parts.push(
    `<text x="10" y="${y + 12}" font-size="11" fill="#555">bars: measured value (green: goal met, red: missed, grey: report only); dashed line: goal</text>`,
  );
  y += 22;
  if (shown.length === 0) {
    parts.push(`<text x="10" y="${y + 14}" font-size="12">no headline figures in this run</text>`);
    y += 24;
  }
  for (const g of shown) {
    parts.push(`<g class="suite" data-suite="${escapeXml(g.suite)}">`);
    parts.push(`<text x="10" y="${y + 15}" font-size="13" font-weight="bold">${escapeXml(g.suite)}</text>`);
    y += TITLE_H;
    // One scale per unit within the group: a suite may report ratios and seconds side by side.
    const maxOf = (unit: Headline['unit']) => {
      const finite = g.headline.filter((h) => h.unit === unit).flatMap((h) => [h.value, h.goal ?? 0]).filter((v) => Number.isFinite(v) && v > 0);
      return (finite.length ? Math.max(...finite) : 1) * 1.15;
    };
    for (const h of g.headline) {
      const max = maxOf(h.unit);
      const x = (v: number) => BAR_X + (Math.max(0, Math.min(v, max)) / max) * BAR_W;
      const met = meetsGoal(h);
      const color = met === null ? COLORS.report : met ? COLORS.met : COLORS.missed;
      const barY = y + (ROW_H - BAR_H) / 2;
      const w = Number.isFinite(h.value) ? x(h.value) - BAR_X : 0;
      parts.push(`<text x="${LABEL_W}" y="${y + 17}" font-size="12" text-anchor="end">${escapeXml(h.label)}</text>`);
      parts.push(`<rect class="bar" x="${BAR_X}" y="${num(barY)}" width="${num(w)}" height="${BAR_H}" fill="${color}" data-value="${h.value}"/>`);
      const goalText = h.goal === undefined ? 'report only' : `goal ${h.goalKind === 'max' ? '≤' : '≥'} ${formatValue(h.goal, h.unit)}`;
      parts.push(`<text x="${num(BAR_X + BAR_W + 8)}" y="${y + 17}" font-size="12">${escapeXml(formatValue(h.value, h.unit))} <tspan fill="#777">(${escapeXml(goalText)})</tspan></text>`);
      if (h.goal !== undefined && Number.isFinite(h.goal)) {
        const gx = num(x(h.goal));
        parts.push(`<line class="goal" x1="${gx}" y1="${y + 1}" x2="${gx}" y2="${y + ROW_H - 1}" stroke="${COLORS.goal}" stroke-width="2" stroke-dasharray="4 2" data-goal="${h.goal}"/>`);
      }
      y += ROW_H;
    }
    parts.push('</g>');
    y += GROUP_GAP;
  }
  const height = y + 6;
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif">`,
    `<rect x="0" y="0" width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    ...parts,
    '</svg>',
    '',
  ].join('\n');
}
