// The page loads, initialises WebGPU (SwiftShader here) and runs a forward pass.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { serve, launch } from './browser.js';

const DIST = process.env.NEPA_DIST ?? join(import.meta.dirname, '../../dist');

test('page starts on WebGPU and runs the model', { timeout: 300_000 }, async () => {
  const server = await serve(DIST);
  const { context, page } = await launch();
  try {
    await page.goto(server.url);
    await page.waitForFunction(
      () => /Ready|Error/.test(document.getElementById('status')?.textContent ?? ''),
      null, { timeout: 240_000 });
    const status = await page.textContent('#status');
    assert.match(status, /Ready on WebGPU/);
    assert.match(await page.textContent('#summary'), /loss -?\d\.\d{4}/);
  } finally {
    await context.close();
    server.close();
  }
});
