// The benchmark's chart: p50 latency and throughput, a group of bars per scenario, a colour per target.

const COLOURS = ['#9aa0a6', '#5f6368', '#34a853', '#1a73e8', '#e37400'];

function fmt(value, digits) {
  return Number.isFinite(value) ? value.toFixed(digits) : 'n/a';
}

/** An SVG of `results[scenario][target]` ({p50, rps}) for the given scenarios and targets. */
export function chart({ title, scenarios, targets, results }) {
  const width = 900, panelHeight = 260, top = 40, left = 70;
  const groupWidth = (width - left - 20) / scenarios.length;
  const barWidth = (groupWidth - 30) / targets.length;
  const panels = [['p50 latency (ms, lower is better)', 'p50', 2], ['throughput (req/s, higher is better)', 'rps', 0]];
  const legendRows = Math.ceil(targets.length / 3);
  const height = top + panels.length * (panelHeight + 60) + 20 + legendRows * 20;
  let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">\n`;
  svg += `<rect width="${width}" height="${height}" fill="white"/>\n`;
  svg += `<text x="${left}" y="20" font-size="15" font-weight="bold">${title}</text>\n`;
  panels.forEach(([panelTitle, key, digits], p) => {
    const y0 = top + p * (panelHeight + 60) + 20;
    svg += `<text x="${left}" y="${y0 - 6}" font-weight="bold">${panelTitle}; each scenario's bars are scaled to its own largest value</text>\n`;
    svg += `<line x1="${left}" y1="${y0 + panelHeight}" x2="${width - 20}" y2="${y0 + panelHeight}" stroke="#333"/>\n`;
    scenarios.forEach((scenario, i) => {
      const max = Math.max(...targets.map((t) => results[scenario.name][t.name][key]).filter(Number.isFinite));
      const gx = left + i * groupWidth + 15;
      targets.forEach((target, j) => {
        const value = results[scenario.name][target.name][key];
        const h = Number.isFinite(value) ? (value / max) * (panelHeight - 20) : 0;
        const x = gx + j * barWidth;
        svg += `<rect x="${x.toFixed(1)}" y="${(y0 + panelHeight - h).toFixed(1)}" width="${(barWidth - 2).toFixed(1)}" height="${h.toFixed(1)}" fill="${COLOURS[j]}"/>\n`;
        svg += `<text x="${(x + barWidth / 2).toFixed(1)}" y="${(y0 + panelHeight - h - 3).toFixed(1)}" text-anchor="middle" font-size="10">${fmt(value, digits)}</text>\n`;
      });
      svg += `<text x="${(gx + groupWidth / 2 - 15).toFixed(1)}" y="${y0 + panelHeight + 16}" text-anchor="middle">${scenario.name}</text>\n`;
    });
  });
  targets.forEach((t, j) => {
    const lx = left + (j % 3) * 270, ly = height - legendRows * 20 - 5 + Math.floor(j / 3) * 20;
    svg += `<rect x="${lx}" y="${ly}" width="12" height="12" fill="${COLOURS[j]}"/><text x="${lx + 18}" y="${ly + 10}">${t.label}</text>\n`;
  });
  return `${svg}</svg>\n`;
}
