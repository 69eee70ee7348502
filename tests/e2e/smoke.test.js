// The page end to end in headless Chromium on WebGPU (SwiftShader here): bundled photos,
// a click on a patch, all five views rendered with real content, and a bad upload.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import { withPage } from './browser.js';

const ROOT = join(import.meta.dirname, '../..');
const DIST = process.env.NEPA_DIST ?? join(ROOT, 'dist');
const SHOTS = join(ROOT, 'target/e2e');

/** Distinct pixel values of a canvas, and its size. */
async function canvasStats(page, id) {
  return page.evaluate((id) => {
    const c = document.getElementById(id);
    if (!c || !c.width) return { distinct: 0, width: 0 };
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const seen = new Set();
    for (let i = 0; i < d.length; i += 4) seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
    return { distinct: seen.size, width: c.width };
  }, id);
}

/** The version of the model on screen (the page's `#model` data-version; it grows with every load or change). */
const versionOf = (page) => page.evaluate(() => Number(document.getElementById('model')?.dataset.version));

/**
 * Waits for a model newer than version `before` and for the view of that model: the view's key
 * starts with the model's version (`v<version>/`), and no analysis is in progress. A view already
 * on screen is of an older version and does not meet it. Returns the new version.
 */
async function viewOfNewerModel(page, before, timeout = 300_000) {
  await page.waitForFunction((before) => {
    const version = Number(document.getElementById('model')?.dataset.version);
    const key = document.getElementById('views')?.dataset.key ?? '';
    return version > before && key.startsWith(`v${version}/`) && !document.getElementById('busy');
  }, before, { timeout });
  return versionOf(page);
}

test('bundled photo: WebGPU (?webgpu), click a patch, five views with content', { timeout: 400_000 }, async () => {
  await withPage(DIST, {}, async ({ page, url }) => {
    await page.goto(`${url}?webgpu`);
    await page.waitForFunction(() => /WebGPU|CPU/.test(document.getElementById('device')?.textContent ?? ''),
      null, { timeout: 120_000 });
    const device = await page.textContent('#device');
    assert.match(device, /Compute: WebGPU/, device);
    // The bundled pretrained demo checkpoint loads by default.
    await page.waitForFunction(() => /safetensors|untrained/.test(document.getElementById('model')?.textContent ?? ''),
      null, { timeout: 60_000 });
    assert.match(await page.textContent('#model'), /nepa-demo\.safetensors: D 64, 4 layers/);
    assert.doesNotMatch(await page.textContent('#model'), /untrained/);
    // The three bundled photos arrive and the first one is analysed.
    await page.waitForFunction(() => document.querySelectorAll('#gallery .thumb').length === 3, null, { timeout: 60_000 });
    await page.waitForSelector('#views canvas#attention', { timeout: 300_000 });
    const first = await page.textContent('#latency');
    assert.match(first, /first run .* \d+ ms/);

    // The first view shows a prediction: the rule's query (docs/nepa.md §6.6), not the corner,
    // and a caption under every map.
    const [rows, cols] = (await page.getAttribute('#views', 'data-grid')).split('x').map(Number);
    assert.ok(rows >= 12 && cols >= 12, `the demo model's grid is ${rows}×${cols}`);
    assert.match(await page.getAttribute('#views', 'data-key'), /\/first$/);
    const [qr, qc] = (await page.getAttribute('#views', 'data-query')).split(',').map(Number);
    assert.ok(qr > 0 && qc > 0 && qr < rows - 1 && qc < cols - 1, `first query (${qr}, ${qc})`);
    assert.match(await page.textContent('.hint'), new RegExp(`Query patch \\(${qr}, ${qc}\\) \\(the first view's choice`));
    const captions = await page.$$eval('#views .panel .caption', (ps) => ps.map((p) => p.textContent));
    assert.equal(captions.length, 6, JSON.stringify(captions));
    for (const c of captions) assert.ok(c.length > 40, `caption: ${c}`);
    console.log(`first view: query (${qr}, ${qc}) of ${rows}×${cols}`);

    // Click patch (row 2, col 5) of the attention map: the query moves.
    const box = await (await page.$('#attention')).boundingBox();
    await page.mouse.click(box.x + box.width * (5.5 / cols), box.y + box.height * (2.5 / rows));
    await page.waitForFunction(() => /Query patch \(2, 5\)/.test(document.querySelector('.hint')?.textContent ?? ''));
    for (const id of ['query', 'attention', 'similarity', 'predictability', 'pca-z', 'pca-z-hat']) {
      const s = await canvasStats(page, id);
      assert.ok(s.width > 0 && s.distinct > 20, `${id}: ${JSON.stringify(s)}`);
    }
    // Hovering shows a value; a second image gives a warm latency.
    await page.mouse.move(box.x + box.width * 0.3, box.y + box.height * 0.3);
    await page.waitForFunction(() => /patch \(\d+, \d+\): /.test(document.getElementById('hover')?.textContent ?? ''));
    await page.click('#gallery .thumb:nth-child(2)');
    await page.waitForFunction(() => /warm: \d+ ms/.test(document.getElementById('latency')?.textContent ?? ''),
      null, { timeout: 120_000 });
    console.log(`latency: ${await page.textContent('#latency')}`);
    await mkdir(SHOTS, { recursive: true });
    await page.screenshot({ path: join(SHOTS, 'views.png'), fullPage: true });
  });
});

test('a file that is not an image gets a clear error and loses nothing', { timeout: 300_000 }, async () => {
  await withPage(DIST, {}, async ({ page, url }) => {
    await page.goto(url);
    await page.waitForFunction(() => document.querySelectorAll('#gallery .thumb').length === 3, null, { timeout: 120_000 });
    await page.setInputFiles('#file-input', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('hello, not a picture') });
    await page.waitForSelector('#errors', { timeout: 30_000 });
    assert.match(await page.textContent('#errors'), /notes\.txt: not an image/);
    assert.equal(await page.locator('#gallery .thumb').count(), 3);
    // A checkpoint that does not fit names the tensor.
    await page.setInputFiles('#file-input', { name: 'bad.safetensors', mimeType: 'application/octet-stream',
      buffer: Buffer.concat([Buffer.from([2, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{}')]) });
    await page.waitForFunction(() => /bad\.safetensors/.test(document.getElementById('errors')?.textContent ?? ''));
    assert.match(await page.textContent('#errors'), /checkpoint does not fit: bad\.safetensors: .*embeddings/);
  });
});

test('a checkpoint loads by URL with a download progress bar', { timeout: 300_000 }, async () => {
  const fixture = join(ROOT, 'tests/fixtures/causal_swiglu_4x3.model.safetensors');
  await withPage(DIST, { extra: { '/models/reference.safetensors': fixture } }, async ({ page, url }) => {
    await page.goto(url);
    await page.waitForSelector('#views canvas#attention', { timeout: 300_000 });
    const demo = await versionOf(page);
    assert.ok(demo >= 1, `the demo model has a version: ${demo}`);
    await page.evaluate(() => {
      window.sawProgress = false;
      new MutationObserver(() => { if (document.getElementById('download')) window.sawProgress = true; })
        .observe(document.body, { childList: true, subtree: true });
    });
    await page.fill('#model-url', `${url}models/reference.safetensors`);
    await page.click('#load-url');
    await page.waitForFunction(() => /reference\.safetensors: D 32, 2 layers, 4 heads/.test(document.getElementById('model')?.textContent ?? ''),
      null, { timeout: 60_000 });
    assert.equal(await page.evaluate(() => window.sawProgress), true, 'a progress bar was shown during the download');
    assert.doesNotMatch(await page.textContent('#model'), /untrained/);
    // The new model is run on the selected photo: the view on screen is keyed to its version.
    const loaded = await viewOfNewerModel(page, demo, 120_000);
    assert.match(await page.textContent('#model'), /reference\.safetensors/, `the view's model (version ${loaded}) is the one loaded`);
    assert.ok(await page.$('#views canvas#attention'));
  });
});

test('adapt to my images: NEPA steps on the gallery update the model and the maps', { timeout: 600_000 }, async () => {
  await withPage(DIST, {}, async ({ page, url }) => {
    await page.goto(url);
    await page.waitForSelector('#views canvas#attention', { timeout: 300_000 });
    const meanOf = async () => Number(/mean (-?\d+\.\d+)/.exec(await page.textContent('#views'))?.[1]);
    const base = await versionOf(page);
    const before = await meanOf();
    assert.ok(Number.isFinite(before), 'the predictability panel shows its mean');
    await page.fill('#adapt-steps', '5');
    await page.click('#adapt');
    await page.waitForFunction(() => /adapted 5\/5 steps/.test(document.getElementById('adapt-status')?.textContent ?? ''),
      null, { timeout: 400_000 });
    console.log(`adapt: ${await page.textContent('#adapt-status')}`);
    assert.match(await page.textContent('#model'), /adapted 5 NEPA steps on your images/);
    // The analysis of the adapted model: the view on screen is keyed to its version.
    const adapted = await viewOfNewerModel(page, base);
    assert.ok(await page.$('#views canvas#predictability'));
    const after = await meanOf();
    console.log(`mean predictability: ${before} before (model version ${base}), ${after} after 5 steps (version ${adapted})`);
    assert.ok(Number.isFinite(after), `the adapted model's predictability panel shows a finite mean: ${after}`);
    assert.notEqual(after, before, `5 NEPA steps left the mean predictability at ${before}`);
  });
});

test('a lost GPU device is reported, and the page continues on the CPU', { timeout: 600_000 }, async () => {
  await withPage(DIST, {}, async ({ page, url }) => {
    await page.goto(`${url}?webgpu`);
    await page.waitForSelector('#views canvas#attention', { timeout: 300_000 });
    assert.match(await page.textContent('#device'), /WebGPU/);
    const onGpu = await versionOf(page);
    // A real loss: the page's GPUDevice is destroyed (the hook exists for this test).
    await page.evaluate(() => window.nepaLoseDevice());
    await page.waitForSelector('#device-lost', { timeout: 30_000 });
    assert.match(await page.textContent('#device-lost'), /GPU device was lost/);
    assert.ok(await page.$('#reload'), 'a reload button is offered');
    await page.click('#use-cpu');
    await page.waitForFunction(() => /CPU \(Flex/.test(document.getElementById('device')?.textContent ?? ''));
    assert.equal(await page.$('#device-lost'), null);
    // The same model is loaded again on the CPU (a new version) and the selected image analysed
    // there: the view on screen is keyed to that version.
    const onCpu = await viewOfNewerModel(page, onGpu);
    assert.match(await page.textContent('#model'), /nepa-demo\.safetensors/);
    assert.ok(await page.$('#views canvas#attention'));
    console.log(`device loss: model version ${onGpu} on WebGPU, ${onCpu} on the CPU`);
  });
});

test('without WebGPU the page says so and runs on the CPU', { timeout: 400_000 }, async () => {
  await withPage(DIST, { webgpu: false }, async ({ page, url }) => {
    await page.goto(url);
    await page.waitForFunction(() => /WebGPU|CPU/.test(document.getElementById('device')?.textContent ?? ''),
      null, { timeout: 120_000 });
    const device = await page.textContent('#device');
    console.log(`no-WebGPU device line: ${device}`);
    assert.match(device, /Compute: CPU \(Flex, wasm\).*CPU fallback: /);
    await page.waitForSelector('#views canvas#attention', { timeout: 300_000 });
  });
});
