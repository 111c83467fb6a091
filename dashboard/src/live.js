// The gateway connection: the current snapshot from /api/snapshot, then
// every new one over /ws. When the socket closes (the gateway restarted,
// the network dropped), it reconnects by itself with a growing delay.

const MIN_DELAY_MS = 500;
const MAX_DELAY_MS = 5000;

export function connect({ onSnapshot, onState }) {
  let delay = MIN_DELAY_MS;
  let socket = null;

  const wsUrl = () => {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${scheme}//${location.host}/ws`;
  };

  const open = () => {
    onState('connecting');
    socket = new WebSocket(wsUrl());
    socket.onopen = () => {
      delay = MIN_DELAY_MS;
      onState('connected');
    };
    socket.onmessage = (event) => {
      try {
        onSnapshot(JSON.parse(event.data));
      } catch (e) {
        console.warn('regionguard: undecodable snapshot', e);
      }
    };
    socket.onclose = () => {
      onState('reconnecting');
      setTimeout(open, delay);
      delay = Math.min(delay * 2, MAX_DELAY_MS);
    };
    // An error is always followed by close, which reconnects.
    socket.onerror = () => {};
  };

  fetch('./api/snapshot')
    .then((r) => (r.ok ? r.json() : null))
    .then((s) => s && onSnapshot(s))
    .catch(() => {});
  open();
}
