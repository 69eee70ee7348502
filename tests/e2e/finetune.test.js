// Fine-tuning in the browser end to end (headless Chromium, WebGPU on SwiftShader): two
// classes made from bundled Fashion-MNIST PNGs, training with the default mode (LoRA), the
// accuracy readout, classification of a new image, the safetensors download loaded by the
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
    assert.match(summary, /held-out accuracy \d+\.\d% \(\d+\/6\)/);
    const memory = await page.$('#memory');
    if (memory) console.log(`memory: ${await memory.textContent()}`);

    // A new image is classified with per-class probabilities.
    await page.setInputFiles('#classify-input', (await pngs('trouser')).slice(-1));
    await page.waitForSelector('#predictions .prediction', { timeout: 120_000 });
    const prediction = await page.textContent('#predictions');
    assert.match(prediction, /bag\s*\d+\.\d%/);
    assert.match(prediction, /trouser\s*\d+\.\d%/);

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
    assert.deepEqual(header['classifier.weight'].shape, [2, 128]);
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
    assert.ok(acc > 50, `native accuracy of the browser-trained model: ${evalOut}`);

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
  assert.ok(diff < 1e-3, `the page and the CLI disagree: max |Δloss| ${diff}`);
});
