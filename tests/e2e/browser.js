// Shared helpers: serve dist/ on loopback and drive Debian's Chromium with WebGPU on.
import { chromium } from 'playwright-core';
import { createServer } from 'node:http';
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import { extname, join, normalize } from 'node:path';
import { tmpdir } from 'node:os';

const TYPES = {
  '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm',
  '.css': 'text/css', '.png': 'image/png', '.jpg': 'image/jpeg', '.json': 'application/json',
  '.safetensors': 'application/octet-stream',
};

/**
 * Serves `root` on 127.0.0.1 (a free port); `extra` maps URL paths ('/x.bin') to files, or to
 * handlers `(req, res) => …` for responses a file cannot give (a body that never ends).
 * Returns { url, close }.
 */
export async function serve(root, extra = {}) {
  const server = createServer(async (req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname));
    if (typeof extra[path] === 'function') return extra[path](req, res);
    const file = extra[path] ?? join(root, path.endsWith('/') ? path + 'index.html' : path);
    const type = TYPES[extname(file)] ?? 'application/octet-stream';
    // The build's precompressed copy when the browser accepts gzip (scripts/wasm-opt.sh), as
    // a static server configured for precompressed files does.
    if (!extra[path] && /\bgzip\b/.test(req.headers['accept-encoding'] ?? '')) {
      const gz = await readFile(file + '.gz').catch(() => null);
      if (gz) {
        res.writeHead(200, { 'content-type': type, 'content-encoding': 'gzip', 'content-length': gz.length });
        return res.end(gz);
      }
    }
    try {
      const body = await readFile(file);
      res.writeHead(200, { 'content-type': type });
      res.end(body);
    } catch {
      res.writeHead(404).end('not found');
    }
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  // Responses that never end would keep the server open: close their connections too.
  const close = () => { server.close(); server.closeAllConnections(); };
  return { url: `http://127.0.0.1:${server.address().port}/`, close };
}

/**
 * Launches headless Chromium with WebGPU (SwiftShader) enabled, on a fresh profile in the temp
 * folder. Returns { context, page, dir }: the caller removes `dir` after closing the context.
 */
export async function launch({ webgpu = true } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'nepa-chromium-'));
  const args = ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'];
  if (webgpu) args.push('--enable-unsafe-webgpu');
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', headless: true, args,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (m) => { if (process.env.NEPA_E2E_VERBOSE) console.log('[page]', m.text()); });
  return { context, page, dir };
}

/**
 * Serves `root` (plus `extra` paths), opens Debian's Chromium on it and runs
 * `fn({ page, url })`; the browser and the server are closed however `fn` ends.
 */
export async function withPage(root, { extra = {}, webgpu = true } = {}, fn) {
  const server = await serve(root, extra);
  const { context, page, dir } = await launch({ webgpu });
  try {
    return await fn({ page, url: server.url });
  } finally {
    await context.close();
    server.close();
    // Each profile holds up to ~300 MB (caches, the stored checkpoints): 530 of them had filled
    // 16 GB of this machine's temp folder.
    await rm(dir, { recursive: true, force: true });
  }
}
