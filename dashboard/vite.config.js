import { defineConfig } from 'vite';

// The collector serves dist/ at /dashboard/ (and at / outside demo mode), so every asset path
// is relative. The page's CSP allows scripts only from files of its own origin: no inline
// script, hence no module-preload polyfill.
export default defineConfig({
  base: './',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2020',
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 1200,
  },
});
