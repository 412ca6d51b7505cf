import { defineConfig } from 'vite';

// The collector (`waymark serve --demo`) serves all of demo-site/ at `/` (skipping node_modules),
// so the built app lives at /vite-app/dist/ on the collector's own origin, which is also the
// SDK's default endpoint.
export default defineConfig({
  base: '/vite-app/dist/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // The SDK's .wasm stays a file of its own, never a data: URL.
    assetsInlineLimit: (file) => (file.endsWith('.wasm') ? false : undefined),
  },
  // `vite dev` only: pre-bundling would move the SDK away from its .wasm and break
  // `new URL('waymark_bg.wasm', import.meta.url)`.
  optimizeDeps: { exclude: ['waymark-sdk'] },
});
