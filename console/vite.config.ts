// Vite builds the console (console/) into dist/console, which src/plugins/console.ts serves at
// /console/. scripts/build-console.mjs runs it with this folder as the root.
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

export default defineConfig({
  plugins: [react()],
  // Asset URLs are absolute under /console/, so index.html works from any path below it.
  base: '/console/',
  // Nothing is fetched from elsewhere: no CDN, no font service, no public/ folder to copy.
  publicDir: false,
  build: {
    outDir: '../dist/console',
    emptyOutDir: true,
    // The polyfill is an inline <script>: the Content-Security-Policy (script-src 'self') forbids it.
    modulePreload: { polyfill: false },
    // Small assets become data: URLs (allowed for images only): keep every asset a file.
    assetsInlineLimit: 0,
    // No source maps: the sources are in this repository, and the image stays small.
    sourcemap: false,
    chunkSizeWarningLimit: 1000,
  },
});
