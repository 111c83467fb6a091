// How the dashboard writes numbers, times and statuses. The gateway sends
// protobuf JSON: 64-bit integers arrive as strings, enums as their names.

export const num = (v) => (v === undefined || v === null ? 0 : Number(v));

const STATUS = {
  STATUS_HEALTHY: 'healthy',
  STATUS_WARNING: 'warning',
  STATUS_CRITICAL: 'critical',
};

export const status = (s) => STATUS[s] || 'unknown';

export const ICON = { healthy: '✓', warning: '!', critical: '✕', unknown: '?' };

/** Microseconds as milliseconds, with precision that suits the size. */
export function ms(us) {
  const v = num(us) / 1000;
  if (v >= 100) return `${v.toFixed(0)} ms`;
  if (v >= 10) return `${v.toFixed(1)} ms`;
  return `${v.toFixed(2)} ms`;
}

export const percent = (p) => `${num(p).toFixed(1)} %`;

export function clock(unixMs) {
  const d = new Date(num(unixMs));
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
}

export const severity = (s) => (s || '').replace('SEVERITY_', '').toLowerCase() || 'unknown';
export const phase = (p) => (p || '').replace('FAILOVER_PHASE_', '').toLowerCase().replace('_', ' ');
export const source = (s) => (s || '').replace('ALERT_SOURCE_', '').toLowerCase();
