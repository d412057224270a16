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
  if (unit === 'MB/s') return v < 100 ? v.toFixed(1) : Math.round(v).toLocaleString('en-US');
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
 * rows: [{ label, unit, better, group, ref?, cells: { broker: { median, min, max, n, errors } } }]
 * brokers: ordered broker names that ran; 'mosquitto' is the reference column, except in rows
 * with a `ref` broker (the scenario's `reference`, for rows mosquitto cannot run, e.g. replay vs
 * nats-server): their ratio cells divide by that broker and say so ("0.85× vs nats-server").
 */
export function markdown({ rows, brokers, labels, meta, notes, saturation }) {
  const L = (b) => labels[b] || b;
  const hasRef = brokers.includes('mosquitto');
  const refOf = (r) => (r.ref && r.cells[r.ref] ? r.ref : hasRef ? 'mosquitto' : null);
  const refs = [...new Set(rows.map(refOf).filter(Boolean))];
  const headRef = hasRef ? 'mosquitto' : refs.length === 1 ? refs[0] : null;
  // a ratio column for every broker that has a ratio in some row
  const ratioCols = brokers.filter((b) => rows.some((r) => { const ref = refOf(r); return ref && ref !== b && r.cells[b]; }));
  const head = ['scenario', 'unit', ...brokers.map(L), ...ratioCols.map((b) => (headRef ? `${L(b)}/${L(headRef)}` : `${L(b)} ratio`)),
    `spread min–max (${brokers.map(L).join(' / ')})`];
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
        const refName = refOf(r);
        const c = r.cells[b];
        const ref = refName && refName !== b ? r.cells[refName] : null;
        if (!(c && ref && c.median !== null && ref.median)) return '—';
        return fmtRatio(c.median / ref.median) + (refName !== headRef ? ` vs ${L(refName)}` : '');
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
  const other = [...new Set(rows.map(refOf).filter((x) => x && x !== headRef))];
  out.push(`↑ higher is better, ↓ lower is better. Ratios are broker median / ${headRef ? `${L(headRef)} median` : 'the median of the broker named in the cell'} for every row` +
    (headRef && other.length ? ` (cells marked "vs ${other.map(L).join('"/"vs ')}" divide by that broker instead: rows ${L(headRef)} does not run)` : '') +
    ', so read them', 'against the arrow: for ↑ rows above 1.00× beats the reference, for ↓ rows below 1.00× does.', '');
  return out.join('\n');
}
