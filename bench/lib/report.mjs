// Aggregation (median, min–max, ratio to mosquitto) and the Markdown report.

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return null;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function fmt(v, unit) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '—';
  if (unit === 'bytes') return `${Math.round(v).toLocaleString('en-US')}`;
  if (unit === 'MB') return v.toFixed(1);
  if (unit === 'µs') return v < 100 ? v.toFixed(1) : Math.round(v).toLocaleString('en-US');
  if (unit.startsWith('CPU-s')) return v.toFixed(2);
  if (unit === '%') return v.toFixed(0);
  const a = Math.abs(v);
  if (a >= 1e6) return `${(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e3) return `${(v / 1e3).toPrecision(3)}k`;
  return v.toFixed(0);
}

export const fmtRatio = (r) => (r === null || !Number.isFinite(r) ? '—' : `${r.toFixed(2)}×`);

/**
 * rows: [{ label, unit, better, group, cells: { broker: { median, min, max, n, errors } } }]
 * brokers: ordered broker names that ran; 'mosquitto' is the reference column.
 */
export function markdown({ rows, brokers, labels, meta, notes, saturation }) {
  const others = brokers.filter((b) => b !== 'mosquitto');
  const hasRef = brokers.includes('mosquitto');
  const ratioCols = hasRef ? others : [];
  const head = ['scenario', 'unit', ...brokers.map((b) => labels[b] || b), ...ratioCols.map((b) => `${labels[b] || b}/mosquitto`),
    `spread min–max (${brokers.map((b) => labels[b] || b).join(' / ')})`];
  const align = ['---', '---', ...brokers.map(() => '---:'), ...ratioCols.map(() => '---:'), '---'];
  const line = (cells) => `| ${cells.join(' | ')} |`;
  const out = [];
  out.push('# edgebus benchmark results', '');
  for (const m of meta) out.push(`- ${m}`);
  out.push('');
  const groups = [['perf', 'Throughput and latency'], ['resources', 'Resources']];
  for (const [g, title] of groups) {
    const rs = rows.filter((r) => (r.group || 'perf') === g);
    if (!rs.length) continue;
    out.push(`## ${title}`, '', line(head), line(align));
    for (const r of rs) {
      const cell = (b) => {
        const c = r.cells[b];
        if (!c) return 'n/a';
        if (c.median === null) return c.errors ? 'failed' : '—';
        return fmt(c.median, r.unit) + (c.errors ? ` (${c.errors} failed)` : '');
      };
      const ratio = (b) => {
        const c = r.cells[b];
        const ref = r.cells.mosquitto;
        return c && ref && c.median !== null && ref.median ? fmtRatio(c.median / ref.median) : '—';
      };
      const spread = brokers.map((b) => {
        const c = r.cells[b];
        if (!c || c.median === null) return '—';
        return c.n > 1 ? `${fmt(c.min, r.unit)}–${fmt(c.max, r.unit)}` : fmt(c.median, r.unit);
      }).join(' / ');
      out.push(line([r.label, `${r.unit} ${r.better === 'lower' ? '↓' : '↑'}`, ...brokers.map(cell), ...ratioCols.map(ratio), spread]));
    }
    out.push('');
  }
  if (saturation?.length) {
    out.push('## Saturation check', '',
      'Median CPU use over the measured window, **broker % / loadgen % / other %** (one core = 100 %; other = every other process on',
      'the machine). The broker should be near 100 % and the generator well below it; a generator near 100 % means that row measures',
      'the generator, not the broker; other above a few % means the machine was not quiet.', '');
    out.push(line(['scenario', ...brokers.map((b) => labels[b] || b)]), line(['---', ...brokers.map(() => '---:')]));
    for (const s of saturation) out.push(line([s.label, ...brokers.map((b) => s.cells[b] || 'n/a')]));
    out.push('');
  }
  if (notes.length) {
    out.push('## Notes', '');
    for (const n of notes) out.push(`- ${n}`);
    out.push('');
  }
  out.push('↑ higher is better, ↓ lower is better. Ratios are broker median / mosquitto median for every row, so read them',
    'against the arrow: for ↑ rows above 1.00× beats mosquitto, for ↓ rows below 1.00× does.', '');
  return out.join('\n');
}
