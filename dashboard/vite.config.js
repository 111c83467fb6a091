import { defineConfig } from 'vite';

// The gateway serves dist/ at its root; `npm run dev` proxies the API and
// the WebSocket to a gateway on 127.0.0.1:8080.
export default defineConfig({
  base: './',
  build: { outDir: 'dist', emptyOutDir: true, chunkSizeWarningLimit: 400 },
  server: {
    proxy: {
      '/api': 'http://127.0.0.1:8080',
      '/ws': { target: 'ws://127.0.0.1:8080', ws: true },
    },
  },
});
