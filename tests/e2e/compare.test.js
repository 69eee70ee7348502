// The Compare page end to end: the shared benchmark run in the browser (WebGPU on
// SwiftShader after the switch, and the Flex CPU backend the page picks over SwiftShader) against the committed native Flex report
// (tests/fixtures/bench-native-flex.json, kept honest by a native test): same seed, data
// and init, so the loss curves must agree within 1e-5 and the output digests closely.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mkdir, readFile } from 'node:fs/promises';
import { withPage } from './browser.js';

const ROOT = join(import.meta.dirname, '../..');
const DIST = process.env.NEPA_DIST ?? join(ROOT, 'dist');
const OUT = join(ROOT, 'target/e2e');
const NATIVE = join(ROOT, 'tests/fixtures/bench-native-flex.json');

// `useAdapter`: click the page's switch to the software WebGPU adapter it passed over;
// `fused`: open the page with `?attention=fused` (nepa's fused attention kernels on WebGPU).
async function runCompare(label, { useAdapter, fused = false }) {
  await withPage(DIST, {}, async ({ page, url }) => {
    await page.goto(fused ? `${url}?attention=fused` : url);
    await page.waitForFunction(() => /WebGPU|CPU/.test(document.getElementById('device')?.textContent ?? ''),
      null, { timeout: 120_000 });
    // On SwiftShader the page picks the CPU (Flex) and offers the adapter.
    assert.match(await page.textContent('#device'), /CPU \(Flex.*software rasteriser/);
    if (useAdapter) {
      await page.click('#use-software-gpu');
      await page.waitForFunction(() => /Compute: WebGPU/.test(document.getElementById('device')?.textContent ?? ''),
        null, { timeout: 120_000 });
    }
    await page.click('#tab-compare');
    // A report of another schema is refused with a clear message.
    await page.setInputFiles('#native-report', { name: 'other.json', mimeType: 'application/json',
      buffer: Buffer.from('{"schema": "something/9"}') });
    await page.waitForSelector('#compare-error');
    assert.match(await page.textContent('#compare-error'), /other\.json: schema is "something\/9"/);

    await page.click('#run-bench');
    await page.waitForSelector('#bench-progress', { timeout: 30_000 });
    await page.waitForFunction(() => !document.getElementById('bench-progress') && document.getElementById('compare-table'),
      null, { timeout: 600_000 });
    await page.setInputFiles('#native-report', NATIVE);
    await page.waitForSelector('#loss-diff', { timeout: 30_000 });
    const lossDiff = await page.textContent('#loss-diff');
    const [, steps, diff] = /over (\d+) steps: ([-+.\de]+)/.exec(lossDiff);
    const digest = await page.textContent('#digest-diff');
    const [, dz, cos] = /max \|Δẑ\| ([-+.\de]+), cosine ([\d.]+)/.exec(digest);
    const ratio = await page.textContent('#step-ratio');
    console.log(`${label}: ${lossDiff} · ${digest} · ${ratio}`);
    assert.equal(Number(steps), 22);
    // Measured max |Δloss| 1.192e-7 over the 22 steps, on WebGPU (SwiftShader) and on Flex in
    // wasm alike (2026-12-06, `cd tests/e2e && node --test compare.test.js`).
    assert.ok(Number(diff) <= 1e-5, `max |Δloss| ${Number(diff).toExponential(3)} over the bound 1e-5: ${lossDiff}`);
    assert.ok(Number(dz) < 1e-3, digest);
    assert.ok(Number(cos) > 0.99999, digest);
    assert.match(await page.textContent('#same-run'), /same model config, seed and batch/);
    assert.match(ratio, /step time: \d+\.\d+×/);
    assert.equal(await page.locator('#compare-chart polyline').count(), 2);
    assert.match(await page.textContent('#compare-table'), /nepa bench/);

    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export-report')]);
    await mkdir(OUT, { recursive: true });
    const file = join(OUT, `browser-report-${label}.json`);
    await download.saveAs(file);
    const report = JSON.parse(await readFile(file, 'utf8'));
    assert.equal(report.schema, 'nepa-run-report/1');
    assert.equal(report.tool, 'browser');
    assert.equal(report.backend, useAdapter ? 'webgpu' : 'browser-flex');
    // The report names the attention its steps took: the kernels only where asked for, on WebGPU.
    if (fused) assert.equal(report.attention, 'fused kernels');
    else assert.doesNotMatch(report.attention, /fused kernels/);
    assert.equal(report.train.loss.length, 20);
    await page.screenshot({ path: join(OUT, `compare-${label}.png`), fullPage: true });
  });
}

test('Compare page on WebGPU (the switch to the software adapter): same loss curve as native Flex within 1e-5', { timeout: 700_000 }, async () => {
  await runCompare('webgpu', { useAdapter: true });
});

test('Compare page on WebGPU with ?attention=fused (nepa\'s fused kernels): same loss curve as native Flex within 1e-5', { timeout: 700_000 }, async () => {
  await runCompare('webgpu-fused', { useAdapter: true, fused: true });
});

test('Compare page on the CPU the page picked over SwiftShader: same loss curve as native Flex within 1e-5', { timeout: 700_000 }, async () => {
  await runCompare('browser-flex', { useAdapter: false });
});
