import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// The build lands in the Python package, where `eagle serve` serves it at `/` (service/console.py).
export default defineConfig({
  base: "./",
  plugins: [react()],
  build: {
    outDir: "../src/eagle_iad/service/webui",
    emptyOutDir: true,
    sourcemap: false,
  },
  server: {
    // `npm run dev` next to `eagle serve --port 8000`: the API is proxied so the page origin works.
    proxy: { "/v1": "http://127.0.0.1:8000", "/healthz": "http://127.0.0.1:8000" },
  },
});
