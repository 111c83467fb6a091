// The health-trends chart (Chart.js): healthy, warning and critical counts
// over the last intervals. The tooltip is HTML (Chart.js's external
// tooltip), so it is readable text: the point's time and "Warning: 4".

import {
  Chart,
  CategoryScale,
  Filler,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
} from 'chart.js';

import { clock, num } from './format.js';

Chart.register(CategoryScale, Filler, Legend, LinearScale, LineController, LineElement, PointElement, Tooltip);

// Where two counts are equal their lines lie on each other: Critical is
// drawn on top (the lowest `order` is drawn last) and thinner than Warning,
// whose wider line shows around it, so a warning and a critical at once
// are two colours, never one line hiding the other.
const SERIES = [
  { key: 'healthy', label: 'Healthy', color: '#1f9d55', order: 2, width: 2, point: 'circle' },
  { key: 'warning', label: 'Warning', color: '#d69e2e', order: 1, width: 7, point: 'circle' },
  { key: 'critical', label: 'Critical', color: '#e53e3e', order: 0, width: 3, point: 'rectRot' },
];

function htmlTooltip(box) {
  return ({ chart, tooltip }) => {
    if (tooltip.opacity === 0 || !tooltip.dataPoints?.length) {
      box.hidden = true;
      return;
    }
    const i = tooltip.dataPoints[0].dataIndex;
    box.replaceChildren();
    const title = document.createElement('div');
    title.className = 'tt-title';
    title.textContent = chart.data.labels[i];
    box.append(title);
    for (const ds of chart.data.datasets) {
      const line = document.createElement('div');
      line.className = 'tt-line';
      line.style.setProperty('--c', ds.borderColor);
      line.textContent = `${ds.label}: ${ds.data[i]}`;
      box.append(line);
    }
    box.hidden = false;
    const x = Math.min(tooltip.caretX + 12, chart.width - box.offsetWidth - 4);
    box.style.left = `${Math.max(0, x)}px`;
    box.style.top = `${Math.max(0, tooltip.caretY - box.offsetHeight / 2)}px`;
  };
}

// Axis text and grid lines follow the page's colours (light or dark).
function themeColours() {
  const css = getComputedStyle(document.documentElement);
  Chart.defaults.color = css.getPropertyValue('--muted').trim() || '#5a6472';
  Chart.defaults.borderColor = css.getPropertyValue('--line').trim() || '#dde3ea';
}

export function trendChart(canvas, tooltipBox) {
  themeColours();
  const chart = new Chart(canvas, {
    type: 'line',
    data: {
      labels: [],
      datasets: SERIES.map((s) => ({
        label: s.label,
        data: [],
        borderColor: s.color,
        backgroundColor: `${s.color}22`,
        borderWidth: s.width,
        order: s.order,
        pointStyle: s.point,
        pointRadius: 3,
        pointHoverRadius: 6,
        cubicInterpolationMode: 'monotone',
        fill: false,
      })),
    },
    options: {
      animation: false,
      maintainAspectRatio: false,
      interaction: { mode: 'index', intersect: false },
      scales: {
        y: { beginAtZero: true, ticks: { precision: 0 } },
        x: { ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 10 } },
      },
      plugins: {
        legend: { position: 'bottom' },
        tooltip: { enabled: false, external: htmlTooltip(tooltipBox) },
      },
    },
  });

  window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => {
    themeColours();
    chart.options.scales.x.ticks.color = Chart.defaults.color;
    chart.options.scales.y.ticks.color = Chart.defaults.color;
    chart.options.scales.x.grid = { ...chart.options.scales.x.grid, color: Chart.defaults.borderColor };
    chart.options.scales.y.grid = { ...chart.options.scales.y.grid, color: Chart.defaults.borderColor };
    chart.options.plugins.legend.labels = { ...chart.options.plugins.legend.labels, color: Chart.defaults.color };
    chart.update('none');
  });

  return {
    chart,
    update(trend) {
      chart.data.labels = trend.map((p) => clock(p.at_unix_ms));
      SERIES.forEach((s, i) => {
        chart.data.datasets[i].data = trend.map((p) => num(p[s.key]));
      });
      chart.update('none');
    },
  };
}
