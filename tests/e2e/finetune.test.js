// Fine-tuning in the browser end to end (headless Chromium, WebGPU on SwiftShader): two
// classes made from bundled Fashion-MNIST PNGs, training with the default mode (LoRA), the
// accuracy readout, classification of new images, the safetensors download loaded by the
// native `nepa eval`, and the model surviving a reload (browser storage).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mkdir, readdir, readFile, rm, cp } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { withPage } from './browser.js';

const ROOT = join(import.meta.dirname, '../..');
const DIST = process.env.NEPA_DIST ?? join(ROOT, 'dist');
const OUT = join(ROOT, 'target/e2e');
const SAMPLES = join(ROOT, 'static/samples/fashion-mnist');
const CLASSES = ['bag', 'trouser'];

async function pngs(cls) {
  const files = (await readdir(join(SAMPLES, cls))).filter((f) => f.endsWith('.png')).sort();
  return files.map((f) => join(SAMPLES, cls, f));
}

// Waits for the model, opens the Fine-tune tab and makes the two classes from bundled PNGs.
async function addBundledClasses(page) {
  await page.waitForFunction(() => /safetensors/.test(document.getElementById('model')?.textContent ?? ''),
    null, { timeout: 120_000 });
  await page.click('#tab-finetune');
  for (const [i, cls] of CLASSES.entries()) {
    await page.fill('#class-name', cls);
    await page.click('#add-class');
    await page.locator('.class-input').nth(i).setInputFiles(await pngs(cls));
    await page.waitForFunction(([i, cls]) => new RegExp(`${cls} \\(16 images\\)`)
      .test(document.querySelectorAll('.class-card')[i]?.textContent ?? ''), [i, cls]);
  }
}

/**
 * A PNG the model was not trained on: the bundled image at `path` mirrored left to right
 * (drawn on a canvas in the page). Returns { name, mimeType, buffer } for setInputFiles.
 */
async function mirrored(page, path, name) {
  const b64 = await page.evaluate(async (src) => {
    const bitmap = await createImageBitmap(await (await fetch(`data:image/png;base64,${src}`)).blob());
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    const ctx = canvas.getContext('2d');
    ctx.translate(bitmap.width, 0);
    ctx.scale(-1, 1);
    ctx.drawImage(bitmap, 0, 0);
    const bytes = new Uint8Array(await (await canvas.convertToBlob({ type: 'image/png' })).arrayBuffer());
    let text = '';
    for (const b of bytes) text += String.fromCharCode(b);
    return btoa(text);
  }, (await readFile(path)).toString('base64'));
  return { name, mimeType: 'image/png', buffer: Buffer.from(b64, 'base64') };
}

/** The page's predictions: for each image, its name and the probability of each class. */
async function predictions(page) {
  return page.$$eval('#predictions .prediction', (ps) => ps.map((p) => ({
    name: p.querySelector('strong')?.textContent,
    probs: Object.fromEntries([...p.querySelectorAll('.prob')].map((row) => [
      row.querySelector('.prob-label').textContent, Number(/(\d+\.\d)%/.exec(row.textContent)?.[1])])),
  })));
}

// Sets the page's step count and batch size.
async function setRun(page, steps, batch) {
  await page.fill('#steps', String(steps));
  await page.dispatchEvent('#steps', 'change');
  await page.fill('#batch', String(batch));
  await page.dispatchEvent('#batch', 'change');
}

// The bundled classes as a folder of class folders, as `nepa` reads them.
async function copyClasses(data) {
  await rm(data, { recursive: true, force: true });
  for (const cls of CLASSES) await cp(join(SAMPLES, cls), join(data, cls), { recursive: true });
}

test('two classes from bundled images: train, accuracy, classify, download, eval natively, reload', { timeout: 900_000 }, async () => {
  await withPage(DIST, {}, async ({ page, url }) => {
    // On WebGPU (the page would pick the CPU over SwiftShader, and finish the 12 steps before
    // Pause could be pressed).
    await page.goto(`${url}?webgpu`);
    await addBundledClasses(page);
    await setRun(page, 12, 4);
    assert.equal(await page.inputValue('#mode'), 'lora', 'LoRA is the default mode');
    const started = Date.now();
    await page.click('#train');
    await page.waitForSelector('#train-progress', { timeout: 30_000 });
    // The page stays responsive while it trains: a zero-delay timer fires promptly.
    const lags = [];
    for (let i = 0; i < 10; i++) {
      lags.push(await page.evaluate(() => new Promise((ok) => {
        const t = performance.now();
        setTimeout(() => ok(performance.now() - t), 0);
      })));
      await page.waitForTimeout(300);
    }
    console.log(`timer lag while training: max ${Math.max(...lags).toFixed(0)} ms`);
    assert.ok(Math.max(...lags) < 2000, `the page froze: timer lags ${lags}`);
    // Pause holds the step count; Resume goes on.
    await page.waitForFunction(() => Number(/step (\d+)\/12/.exec(document.getElementById('train-status')?.textContent ?? '')?.[1] ?? 0) >= 2,
      null, { timeout: 300_000 });
    await page.click('#pause');
    await page.waitForFunction(() => /paused/.test(document.getElementById('train-status')?.textContent ?? ''),
      null, { timeout: 120_000 });
    const held = await page.textContent('#train-status');
    await page.waitForTimeout(1500);
    assert.equal(/step \d+/.exec(await page.textContent('#train-status'))[0], /step \d+/.exec(held)[0]);
    await page.click('#pause');
    await page.waitForFunction(() => /finished/.test(document.getElementById('train-status')?.textContent ?? ''),
      null, { timeout: 600_000 });
    await page.waitForSelector('#trained-summary', { timeout: 300_000 });
    const status = await page.textContent('#train-status');
    console.log(`train: ${status} (${((Date.now() - started) / 1e3).toFixed(0)} s wall)`);
    const losses = JSON.parse(await page.getAttribute('#train-status', 'data-losses'));
    assert.equal(losses.length, 12);
    const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
    assert.ok(mean(losses.slice(-3)) < mean(losses.slice(0, 3)), `loss did not fall: ${losses}`);
    assert.match(await page.textContent('#train-accuracy'), /accuracy \(last \d+ steps\): \d+\.\d%/);
    const summary = await page.textContent('#trained-summary');
    console.log(`summary: ${summary}`);
    const [, heldOut, right] = /held-out accuracy (\d+\.\d)% \((\d+)\/6\)/.exec(summary) ?? [];
    assert.equal(Number(heldOut).toFixed(1), (100 * Number(right) / 6).toFixed(1), summary);
    // Measured 66.7% (4/6) after these 12 steps on WebGPU (SwiftShader), as `nepa finetune` gives
    // on Flex with the same seed and split (2026-12-06); chance is 50% (3/6). Six held-out images
    // leave no room for a margin below the measured value that stays above chance.
    assert.ok(Number(right) >= 4, `held-out accuracy ${heldOut}% (floor 4/6, 66.7%): ${summary}`);
    const memory = await page.$('#memory');
    if (memory) console.log(`memory: ${await memory.textContent()}`);

    // New images (mirrored copies of a bundled bag and trouser) are classified with per-class
    // probabilities, and the right class wins. After these 12 steps the model still takes 5 of
    // the 16 bags for trousers (`nepa eval` of the same run on Flex, 2026-12-06), the last one
    // among them: the bag mirrored here is the first, which it gets right, if narrowly (bag 51.2%
    // against 48.8%; the mirrored trouser: trouser 72.3%; 2026-12-06).
    const fresh = { bag: await mirrored(page, (await pngs('bag'))[0], 'mirrored-bag.png'),
      trouser: await mirrored(page, (await pngs('trouser'))[0], 'mirrored-trouser.png') };
    await page.setInputFiles('#classify-input', Object.values(fresh));
    await page.waitForFunction(() => document.querySelectorAll('#predictions .prediction .prob').length === 4,
      null, { timeout: 120_000 });
    const predicted = await predictions(page);
    console.log(`predictions: ${JSON.stringify(predicted)}`);
    for (const [cls, { name }] of Object.entries(fresh)) {
      const p = predicted.find((q) => q.name === name)?.probs;
      assert.ok(p && CLASSES.every((c) => Number.isFinite(p[c])), `${name}: ${JSON.stringify(predicted)}`);
      assert.ok(Math.abs(CLASSES.reduce((sum, c) => sum + p[c], 0) - 100) < 0.2, `${name}: probabilities sum to 100%: ${JSON.stringify(p)}`);
      const other = CLASSES.find((c) => c !== cls);
      assert.ok(p[cls] > p[other], `${name} is classified as ${other}: ${JSON.stringify(p)}`);
    }

    // The download has the official keys and loads in the native CLI.
    await mkdir(OUT, { recursive: true });
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-model')]);
    const file = join(OUT, 'finetuned.safetensors');
    await download.saveAs(file);
    const bytes = await readFile(file);
    const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString());
    for (const key of ['vit_nepa.embeddings.patch_embeddings.projection.weight',
      'vit_nepa.encoder.layer.0.attention.attention.query.weight', 'fc_norm.weight', 'classifier.weight']) {
      assert.ok(header[key], `${key} missing from the saved file`);
    }
    // Two classes on the backbone's width (the patch projection's output channels).
    const width = header['vit_nepa.embeddings.patch_embeddings.projection.weight'].shape[0];
    assert.deepEqual(header['classifier.weight'].shape, [2, width]);
    assert.deepEqual(JSON.parse(header.__metadata__.nepa_classes), CLASSES, 'class names travel with the file');
    const data = join(OUT, 'finetune-eval-data');
    await copyClasses(data);
    // scripts/test.sh passes the binary its native tests built (NEPA_BIN): `cargo run` here would
    // resolve Burn's features differently from the workspace build and compile Burn again.
    const evalArgs = ['eval', '--checkpoint', file, '--data', data, '--device', 'flex'];
    const evalOut = process.env.NEPA_BIN
      ? execFileSync(process.env.NEPA_BIN, evalArgs, { cwd: ROOT, encoding: 'utf8' })
      : execFileSync('cargo', ['run', '-q', '-p', 'nepa-cli', '--', ...evalArgs], { cwd: ROOT, encoding: 'utf8' });
    console.log(`nepa eval: ${evalOut.trim()}`);
    const acc = Number(/top-1 accuracy (\d+\.\d+)%/.exec(evalOut)?.[1]);
    // Measured 84.38% (27/32) on the 32 images of the two classes (2026-12-06); chance is 50%.
    assert.ok(acc >= 75, `native accuracy of the browser-trained model (floor 75%): ${evalOut}`);

    // A reload keeps the trained model (browser storage).
    await page.reload();
    await page.waitForFunction(() => /safetensors/.test(document.getElementById('model')?.textContent ?? ''),
      null, { timeout: 120_000 });
    await page.click('#tab-finetune');
    await page.waitForFunction(() => /restored from browser storage/.test(document.getElementById('trained-summary')?.textContent ?? ''),
      null, { timeout: 60_000 });
    await page.screenshot({ path: join(OUT, 'finetune.png'), fullPage: true });
  });
});

// One driver for both shells: the page's fine-tuning on the Flex CPU fallback (?cpu) and
// `nepa finetune` with the same preset (FinetuneSettings::quick, spelled out as flags), seed,
// images and checkpoint give the same loss curve step by step.
test('the page and `nepa finetune` give the same loss curve on Flex', { timeout: 900_000 }, async () => {
  const STEPS = 6;
  const BATCH = 4;
  let pageLosses;
  await withPage(DIST, {}, async ({ page, url }) => {
    await page.goto(`${url}?cpu`);
    await addBundledClasses(page);
    await setRun(page, STEPS, BATCH);
    await page.click('#train');
    await page.waitForSelector('#trained-summary', { timeout: 600_000 });
    pageLosses = JSON.parse(await page.getAttribute('#train-status', 'data-losses'));
  });
  assert.equal(pageLosses.length, STEPS);

  const data = join(OUT, 'same-curve-data');
  const out = join(OUT, 'same-curve-cli');
  await copyClasses(data);
  const args = ['finetune', '--init', join(ROOT, 'static/nepa-demo.safetensors'), '--data', data,
    '--recipe', 'small-data', '--mode', 'lora', '--steps', String(STEPS), '--batch-size', String(BATCH),
    '--lr', '1e-3', '--head-lr', '1e-3', '--warmup-ratio', '0.1', '--ema-decay', '0', '--drop-path', '0',
    '--val-fraction', '0.2', '--seed', '0', '--device', 'flex', '--out', out, '--overwrite'];
  const cliOut = process.env.NEPA_BIN
    ? execFileSync(process.env.NEPA_BIN, args, { cwd: ROOT, encoding: 'utf8' })
    : execFileSync('cargo', ['run', '-q', '-p', 'nepa-cli', '--', ...args], { cwd: ROOT, encoding: 'utf8' });
  console.log(`nepa finetune: ${cliOut.trim().split('\n').slice(-1)[0]}`);
  const cliLosses = (await readFile(join(out, 'metrics.jsonl'), 'utf8')).trim().split('\n')
    .map((line) => JSON.parse(line)).filter((r) => r.loss !== undefined).map((r) => r.loss);
  console.log(`page losses: ${pageLosses.map((l) => l.toFixed(6)).join(' ')}`);
  console.log(`CLI losses:  ${cliLosses.map((l) => l.toFixed(6)).join(' ')}`);
  assert.equal(cliLosses.length, STEPS);
  const diff = Math.max(...pageLosses.map((l, i) => Math.abs(l - cliLosses[i])));
  console.log(`max |Δloss| page vs CLI over ${STEPS} steps: ${diff.toExponential(2)}`);
  // Measured max |Δloss| 5.96e-8 over the 6 steps (2026-12-06).
  assert.ok(diff <= 1e-5, `the page and the CLI disagree: max |Δloss| ${diff} (bound 1e-5)`);
});
