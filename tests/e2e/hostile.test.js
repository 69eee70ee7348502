// Hostile input and faults in headless Chromium: each gives a clear message on the page and
// loses nothing (the model already loaded, the gallery, the model kept in browser storage).
//   * images: a truncated JPEG (warned about, still added) and a PNG declaring 10000 × 10000;
//   * checkpoint downloads by URL: a stalled body, a Content-Length over the cap, a body that
//     streams past the cap, and Cancel;
//   * browser storage (OPFS): a stored model that does not parse or whose classes do not
//     match its head;
//   * fine-tuning: a run that diverges (absurd learning rate) and Stop leave the stored model
//     as it was.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFile, readdir } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { withPage } from './browser.js';

const ROOT = join(import.meta.dirname, '../..');
const DIST = process.env.NEPA_DIST ?? join(ROOT, 'dist');
const SAMPLES = join(ROOT, 'static/samples/fashion-mnist');
const DEMO = /nepa-demo\.safetensors: D 64, 4 layers/;
const STORED = 'nepa-finetuned.safetensors';

/** Waits for the demo model, the three bundled photos and the first maps. */
async function ready(page) {
  await page.waitForFunction(() => document.querySelectorAll('#gallery .thumb').length === 3, null, { timeout: 120_000 });
  await page.waitForSelector('#views canvas#attention', { timeout: 300_000 });
  assert.match(await page.textContent('#model'), DEMO);
}

/** The model already loaded still answers: a click on a patch moves the query. */
async function stillRenders(page, row, col) {
  assert.match(await page.textContent('#model'), DEMO, 'the loaded model is kept');
  await page.waitForSelector('#views canvas#attention', { timeout: 120_000 });
  // No load in progress: its bar and a late error would move the maps while we click.
  await page.waitForFunction(() => !document.getElementById('loading'), null, { timeout: 5_000 });
  // The banners above can push the maps below the fold: a mouse click there hits nothing.
  await page.locator('#attention').scrollIntoViewIfNeeded();
  const box = await (await page.$('#attention')).boundingBox();
  const [rows, cols] = (await page.getAttribute('#views', 'data-grid')).split('x').map(Number);
  await page.mouse.click(box.x + box.width * ((col + 0.5) / cols), box.y + box.height * ((row + 0.5) / rows));
  await page.waitForFunction(([r, c]) => new RegExp(`Query patch \\(${r}, ${c}\\)`)
    .test(document.querySelector('.hint')?.textContent ?? ''), [row, col], { timeout: 60_000 });
}

/** The error banner's messages. */
async function errors(page, id = 'errors') {
  return page.$$eval(`#${id} .error`, (ps) => ps.map((p) => p.textContent));
}

async function dismiss(page, id = 'errors') {
  await page.click(`#${id} button`);
  await page.waitForSelector(`#${id}`, { state: 'detached' });
}

function pngChunk(type, data) {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'ascii');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([Buffer.from(type, 'ascii'), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/** A 60-byte PNG whose header declares `w × h` pixels (a decompression bomb's header). */
function pngDeclaring(w, h) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB, no interlace
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr), pngChunk('IDAT', Buffer.from([0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01])),
    pngChunk('IEND', Buffer.alloc(0))]);
}

test('images: a truncated JPEG is added with a warning naming it; a huge PNG header is refused as too large', { timeout: 400_000 }, async () => {
  const jpeg = await readFile(join(ROOT, 'static/photos/coffee.jpg'));
  await withPage(DIST, {}, async ({ page, url }) => {
    await page.goto(url);
    await ready(page);
    await page.setInputFiles('#file-input', [
      { name: 'cut.jpg', mimeType: 'image/jpeg', buffer: jpeg.subarray(0, Math.floor(jpeg.length / 2)) },
      { name: 'bomb.png', mimeType: 'image/png', buffer: pngDeclaring(10000, 10000) },
    ]);
    await page.waitForFunction(() => document.querySelectorAll('#errors .error').length >= 2, null, { timeout: 60_000 });
    const shown = await errors(page);
    console.log(`image messages: ${JSON.stringify(shown)}`);
    const bomb = shown.find((e) => e.startsWith('bomb.png'));
    assert.equal(bomb, 'bomb.png: the image is too large: 10000 × 10000 pixels, but at most 67108864 pixels (about 67 megapixels) are accepted');
    const cut = shown.find((e) => e.startsWith('cut.jpg'));
    assert.equal(cut, 'cut.jpg: the JPEG data is truncated (no end-of-image marker): the missing part is shown grey (the image was added)');
    // The truncated image is added (4 thumbnails), the bomb is not; the model stays.
    await page.waitForFunction(() => document.querySelectorAll('#gallery .thumb').length === 4, null, { timeout: 30_000 });
    assert.ok(await page.$('#gallery .thumb[title="cut.jpg"]'));
    await stillRenders(page, 3, 4);
  });
});

/** Responses a file cannot give. `open` counts the bodies still being sent. */
function hostileRoutes() {
  const timers = new Set();
  const endless = (res, everyMs, chunk) => {
    const t = setInterval(() => res.write(chunk), everyMs);
    timers.add(t);
    res.on('close', () => { clearInterval(t); timers.delete(t); });
  };
  return {
    timers,
    routes: {
      // A header and 1000 bytes of a promised 10 MB, then silence.
      '/stall.safetensors': (req, res) => {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': '10000000' });
        res.write(Buffer.alloc(1000));
      },
      // Announces 3 GB (over 2^31: the old code pre-sized a buffer from it and panicked).
      '/huge.safetensors': (req, res) => {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': '3000000000' });
        endless(res, 50, Buffer.alloc(64 * 1024));
      },
      // No Content-Length, 64 KiB every 10 ms for ever.
      '/endless.safetensors': (req, res) => {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        endless(res, 10, Buffer.alloc(64 * 1024));
      },
      // Slow but alive: 1 KiB every 100 ms, never ending (for Cancel).
      '/slow.safetensors': (req, res) => {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        endless(res, 100, Buffer.alloc(1024));
      },
    },
  };
}

async function loadUrl(page, url) {
  await page.fill('#model-url', url);
  await page.click('#load-url');
}

test('downloads by URL: stall, too large (header and stream), cancel — clear errors, the model stays', { timeout: 400_000 }, async () => {
  const { routes, timers } = hostileRoutes();
  await withPage(DIST, { extra: routes }, async ({ page, url }) => {
    await page.goto(url);
    await ready(page);
    // The test hook shrinks the stall timeout and the cap so that this runs in seconds.
    await page.evaluate(() => { window.nepaDownloadLimits = { stallMs: 1500 }; });

    let started = Date.now();
    await loadUrl(page, `${url}stall.safetensors`);
    await page.waitForSelector('#errors', { timeout: 30_000 });
    const stalled = await errors(page);
    console.log(`stall: ${JSON.stringify(stalled)} after ${Date.now() - started} ms`);
    assert.deepEqual(stalled, [`${url}stall.safetensors: the download stalled: no data for 1.5 s (after 0.0 MB); it was stopped`]);
    assert.equal(await page.$('#cancel-download'), null, 'no Cancel button once it ended');
    await dismiss(page);
    await stillRenders(page, 1, 1);

    // Content-Length over the cap: refused before any body is read, whatever the hook says
    // (the default cap, 1 GiB, is below the 3 GB announced).
    await page.evaluate(() => { delete window.nepaDownloadLimits; });
    started = Date.now();
    await loadUrl(page, `${url}huge.safetensors`);
    await page.waitForSelector('#errors', { timeout: 30_000 });
    const huge = await errors(page);
    console.log(`huge header: ${JSON.stringify(huge)} after ${Date.now() - started} ms`);
    assert.deepEqual(huge, [`${url}huge.safetensors: the download is too large: the server announces 3000.0 MB (Content-Length), but the page accepts at most 1 GiB (the browser's wasm32 memory, 4 GiB at most, must also hold the parsed model); nothing was loaded`]);
    await dismiss(page);

    // No Content-Length, a body past the cap: stopped as soon as it passes it.
    await page.evaluate(() => { window.nepaDownloadLimits = { stallMs: 5000, capBytes: 1_000_000 }; });
    started = Date.now();
    await loadUrl(page, `${url}endless.safetensors`);
    await page.waitForSelector('#errors', { timeout: 30_000 });
    const endless = await errors(page);
    console.log(`endless: ${JSON.stringify(endless)} after ${Date.now() - started} ms`);
    assert.deepEqual(endless, [`${url}endless.safetensors: the download is too large: it sent more than 1.0 MB without ending, but the page accepts at most 1.0 MB (the browser's wasm32 memory, 4 GiB at most, must also hold the parsed model); nothing was loaded`]);
    await dismiss(page);
    await stillRenders(page, 2, 6);

    // Alive but too slow: the overall timeout.
    await page.evaluate(() => { window.nepaDownloadLimits = { stallMs: 5000, totalMs: 1000 }; });
    await loadUrl(page, `${url}slow.safetensors`);
    await page.waitForSelector('#errors', { timeout: 30_000 });
    const slow = await errors(page);
    console.log(`overall timeout: ${JSON.stringify(slow)}`);
    assert.equal(slow.length, 1);
    assert.match(slow[0], new RegExp(`^${url.replace(/[.]/g, '\\.')}slow\\.safetensors: the download took longer than 1 s and was stopped after \\d+\\.\\d MB$`));
    await dismiss(page);
    await page.evaluate(() => { delete window.nepaDownloadLimits; });

    // Cancel during a slow download.
    await loadUrl(page, `${url}slow.safetensors`);
    await page.waitForSelector('#download', { timeout: 30_000 });
    await page.click('#cancel-download');
    await page.waitForSelector('#errors', { timeout: 30_000 });
    const cancelled = await errors(page);
    console.log(`cancel: ${JSON.stringify(cancelled)}`);
    assert.match(cancelled[0], new RegExp(`^${url.replace(/[.]/g, '\\.')}slow\\.safetensors: download cancelled after \\d+\\.\\d MB; the model already loaded is kept$`));
    assert.equal(cancelled.length, 1);
    await stillRenders(page, 5, 0);
    // The server saw every hostile body closed by the page.
    await page.waitForTimeout(500);
    assert.equal(timers.size, 0, 'the page closed every endless response');
  });
});

// ---------------------------------------------------------------------------------------------
// Fine-tuning and browser storage
// ---------------------------------------------------------------------------------------------

async function pngs(cls) {
  const files = (await readdir(join(SAMPLES, cls))).filter((f) => f.endsWith('.png')).sort();
  return files.map((f) => join(SAMPLES, cls, f));
}

/** The entries of the OPFS root and the SHA-256 of the stored model (null if none). */
async function storage(page) {
  return page.evaluate(async (name) => {
    const root = await navigator.storage.getDirectory();
    const names = [];
    for await (const [n] of root.entries()) names.push(n);
    let sha = null;
    let size = null;
    try {
      const bytes = await (await (await root.getFileHandle(name)).getFile()).arrayBuffer();
      size = bytes.byteLength;
      sha = [...new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))]
        .map((b) => b.toString(16).padStart(2, '0')).join('');
    } catch { /* none */ }
    return { names: names.sort(), sha, size };
  }, STORED);
}

async function setNumber(page, id, value) {
  await page.fill(id, String(value));
  await page.dispatchEvent(id, 'change');
}

/** Trains to the end (or to a message) and returns the #train-status text. */
async function trainUntilIdle(page) {
  await page.click('#train');
  await page.waitForFunction(() => /finished/.test(document.getElementById('train-status')?.textContent ?? '')
    && !document.querySelector('#finetune .busy'), null, { timeout: 300_000 });
  return page.textContent('#train-status');
}

async function classesReady(page) {
  await page.click('#tab-finetune');
  for (const [i, cls] of ['bag', 'trouser'].entries()) {
    await page.fill('#class-name', cls);
    await page.click('#add-class');
    await page.locator('.class-input').nth(i).setInputFiles((await pngs(cls)).slice(0, 4));
    await page.waitForFunction(([i, cls]) => new RegExp(`${cls} \\(4 images\\)`)
      .test(document.querySelectorAll('.class-card')[i]?.textContent ?? ''), [i, cls]);
  }
  await setNumber(page, '#batch', 2);
}

test('fine-tuning: divergence and Stop keep the stored model; a bad stored model is reported and kept', { timeout: 900_000 }, async () => {
  await withPage(DIST, {}, async ({ page, url }) => {
    // On WebGPU (SwiftShader): on the CPU fallback the engine can start the first step before
    // the page's Stop (pressed the moment it is enabled) reaches it, and Stop at step 0 is
    // what this test checks.
    await page.goto(`${url}?webgpu`);
    await page.waitForFunction(() => /safetensors/.test(document.getElementById('model')?.textContent ?? ''), null, { timeout: 120_000 });
    await classesReady(page);

    // A good, completed run is stored: one file, no temporary entry left.
    await setNumber(page, '#steps', 2);
    let started = Date.now();
    console.log(`good run: ${await trainUntilIdle(page)} (${Date.now() - started} ms)`);
    await page.waitForSelector('#trained-summary');
    const good = await storage(page);
    console.log(`stored: ${JSON.stringify(good)}`);
    assert.deepEqual(good.names, [STORED], 'one file, moved into place');
    assert.ok(good.sha);

    // An absurd learning rate: the run stops with the guard's message, storage unchanged.
    await page.evaluate(() => { window.nepaFinetuneOverrides = { lr: 1e38 }; });
    await setNumber(page, '#steps', 3);
    started = Date.now();
    console.log(`diverging run: ${await trainUntilIdle(page)} (${Date.now() - started} ms)`);
    const diverged = await errors(page, 'finetune-errors');
    console.log(`divergence: ${JSON.stringify(diverged)}`);
    assert.equal(diverged.length, 1);
    assert.match(diverged[0], /^training diverged: 1 non-finite steps in a row \(last at step (\d+): (loss|gradient norm) (NaN|-?inf)\); the weights from before them are kept\. Try a lower learning rate\. /);
    assert.match(diverged[0], /(The model from step \d+ is kept on this page only, not in browser storage \(the model in browser storage is unchanged\): download it to keep it\.|Nothing was trained; the model in browser storage is unchanged\.|The trained model is not kept: tensor `.*` holds non-finite values .*; the model in browser storage is unchanged\.)$/);
    assert.deepEqual(await storage(page), good, 'the stored model is unchanged after divergence');
    await dismiss(page, 'finetune-errors');
    await page.evaluate(() => { delete window.nepaFinetuneOverrides; });

    // Stop as soon as it is enabled, before step 1: nothing trained, nothing replaced.
    await setNumber(page, '#steps', 50);
    const summaryBefore = await page.textContent('#trained-summary');
    await page.evaluate(() => new Promise((ok) => {
      const stop = document.getElementById('stop');
      new MutationObserver((_, observer) => {
        if (stop.disabled) return;
        observer.disconnect();
        stop.click();
        ok();
      }).observe(stop, { attributes: true });
      document.getElementById('train').click();
    }));
    const stopMessage = () => page.waitForFunction(() => /finished/.test(document.getElementById('train-status')?.textContent ?? '')
      && /^stopped/.test(document.querySelector('#finetune .busy')?.textContent ?? ''), null, { timeout: 300_000 });
    await stopMessage();
    const atZero = await page.textContent('#finetune .busy');
    console.log(`stop at step 0: ${atZero} · ${await page.textContent('#train-status')}`);
    assert.equal(atZero, 'stopped before the first step: nothing was trained; the model in browser storage is unchanged.');
    assert.equal(await page.textContent('#trained-summary'), summaryBefore, 'the page keeps the last model');
    assert.deepEqual(await storage(page), good, 'the stored model is unchanged after Stop at step 0');

    // Stop after a step: the partial model is on the page only, storage unchanged.
    await page.click('#train');
    await page.waitForFunction(() => Number(/step (\d+)\/50/.exec(document.getElementById('train-status')?.textContent ?? '')?.[1] ?? 0) >= 1,
      null, { timeout: 300_000 });
    await page.click('#stop');
    await stopMessage();
    const later = await page.textContent('#finetune .busy');
    console.log(`stop later: ${later}`);
    assert.match(later, /^stopped at step \d+\/50: the partly trained model is kept on this page only, not in browser storage \(the model in browser storage is unchanged\): download it to keep it\.$/);
    assert.match(await page.textContent('#trained-summary'), /stopped at step \d+\/50/);
    assert.deepEqual(await storage(page), good, 'the stored model is unchanged after Stop');

    // A stored model whose class list does not match its head (3 names, 2 outputs): reported
    // on reload, not used, left in storage.
    await page.evaluate(async (name) => {
      const root = await navigator.storage.getDirectory();
      const bytes = new Uint8Array(await (await (await root.getFileHandle(name)).getFile()).arrayBuffer());
      const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
      const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
      header.__metadata__.nepa_classes = JSON.stringify(['bag', 'trouser', 'sandal']);
      let json = new TextEncoder().encode(JSON.stringify(header));
      const padded = new Uint8Array(Math.ceil(json.length / 8) * 8).fill(0x20);
      padded.set(json);
      json = padded;
      const out = new Uint8Array(8 + json.length + bytes.length - 8 - n);
      new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
      out.set(json, 8);
      out.set(bytes.subarray(8 + n), 8 + json.length);
      const w = await (await root.getFileHandle(name)).createWritable();
      await w.write(out);
      await w.close();
    }, STORED);
    const tampered = await storage(page);
    await page.reload();
    await page.waitForFunction(() => /safetensors/.test(document.getElementById('model')?.textContent ?? ''), null, { timeout: 120_000 });
    await page.click('#tab-finetune');
    await page.waitForSelector('#finetune-errors', { timeout: 60_000 });
    const mismatch = await errors(page, 'finetune-errors');
    console.log(`mismatched classes: ${JSON.stringify(mismatch)}`);
    assert.deepEqual(mismatch, [`the model kept in browser storage (OPFS file ${STORED}, ${tampered.size} bytes) is not usable: it names 3 classes (bag, trouser, sandal) but its head has 2 outputs. It was not loaded, and it is left in storage until the next completed training run replaces it.`]);
    assert.equal(await page.$('#trained-summary'), null, 'the bad entry is not used');
    assert.deepEqual(await storage(page), tampered, 'the bad entry is not deleted');

    // Bytes that are not a safetensors file at all.
    await page.evaluate(async (name) => {
      const root = await navigator.storage.getDirectory();
      const w = await (await root.getFileHandle(name)).createWritable();
      await w.write(new TextEncoder().encode('not a model'));
      await w.close();
    }, STORED);
    await page.reload();
    await page.waitForFunction(() => /safetensors/.test(document.getElementById('model')?.textContent ?? ''), null, { timeout: 120_000 });
    await page.click('#tab-finetune');
    await page.waitForSelector('#finetune-errors', { timeout: 60_000 });
    const garbage = await errors(page, 'finetune-errors');
    console.log(`garbage: ${JSON.stringify(garbage)}`);
    assert.equal(garbage.length, 1);
    assert.match(garbage[0], new RegExp(`^the model kept in browser storage \\(OPFS file ${STORED.replace('.', '\\.')}, 11 bytes\\) is not usable: checkpoint is not a valid safetensors file: .+\\. It was not loaded, and it is left in storage until the next completed training run replaces it\\.$`));
    assert.equal((await storage(page)).size, 11, 'the bad entry is not deleted');
  });
});
