// The page as an app: every model computation runs in the engine worker, so the page never
// blocks (the main thread's tasks are traced while the engine trains); a NEPA-B-shaped
// checkpoint loads by file and by URL (kept in Cache Storage); late views are dropped; the
// device pick passes over a software WebGPU adapter.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mkdir, stat, readFile } from 'node:fs/promises';
import { withPage } from './browser.js';
import { writeNepaB } from './nepa-b.js';

const ROOT = join(import.meta.dirname, '../..');
const DIST = process.env.NEPA_DIST ?? join(ROOT, 'dist');
const OUT = join(ROOT, 'target/e2e');

/**
 * Starts measuring the page's timer lag: the longest gap between two zero-delay timers. Beside
 * it, the main thread's own tasks over 50 ms (Long Tasks API): a gap with no such task in it was
 * not one long task of the page (see `bound` below).
 */
async function startLagMonitor(page) {
  await page.evaluate(() => {
    window.maxLag = 0;
    window.lags = [];
    window.longTasks = [];
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.longTasks.push([Math.round(e.startTime), Math.round(e.duration)]);
    }).observe({ type: 'longtask' });
    let last = performance.now();
    const tick = () => {
      const now = performance.now();
      window.maxLag = Math.max(window.maxLag, now - last);
      if (now - last > 30) window.lags.push([Math.round(now), Math.round(now - last)]);
      last = now;
      setTimeout(tick, 0);
    };
    setTimeout(tick, 0);
  });
}

/**
 * Starts a Chrome trace of the page (CDP, the DevTools timeline's tasks). `stop()` ends it and
 * returns the tasks of the page's main thread (the renderer process of the page's main frame,
 * thread CrRendererMain; the engine worker's thread is another): their count and the longest by
 * thread time (`tdur`, the CPU time the thread spent in the task: unlike the wall time, it does
 * not grow while the thread waits for a core other processes hold), as [thread ms, wall ms].
 */
async function startMainThreadTrace(page) {
  const cdp = await page.context().newCDPSession(page);
  const events = [];
  cdp.on('Tracing.dataCollected', ({ value }) => { for (const e of value) events.push(e); });
  // The tasks only (RunTask, in every thread), in a buffer that holds a whole run: a full
  // buffer stops recording, and the trace would miss the tasks after it.
  await cdp.send('Tracing.start', {
    transferMode: 'ReportEvents',
    traceConfig: { recordMode: 'recordUntilFull', traceBufferSizeInKb: 256 * 1024,
      includedCategories: ['disabled-by-default-devtools.timeline'], excludedCategories: ['*'] },
  });
  return async () => {
    const complete = new Promise((ok) => cdp.once('Tracing.tracingComplete', ok));
    await cdp.send('Tracing.end');
    const { dataLossOccurred } = await complete;
    await cdp.detach();
    assert.equal(dataLossOccurred, false, 'the trace lost events (its buffer was full)');
    const pid = events.find((e) => e.name === 'TracingStartedInBrowser')
      ?.args?.data?.frames?.find((f) => f.isOutermostMainFrame)?.processId;
    const main = events.find((e) => e.ph === 'M' && e.name === 'thread_name' && e.pid === pid
      && e.args?.name === 'CrRendererMain');
    assert.ok(main, `the trace names the page's main thread (renderer process ${pid})`);
    const tasks = events.filter((e) => e.ph === 'X' && e.name === 'RunTask' && e.pid === pid && e.tid === main.tid
      && Number.isFinite(e.tdur)).map((e) => [e.tdur / 1e3, e.dur / 1e3]).sort((a, b) => b[0] - a[0]);
    return { count: tasks.length, longest: tasks.slice(0, 5).map(([t, w]) => [Number(t.toFixed(1)), Number(w.toFixed(1))]) };
  };
}

const textOf = (page, id) => page.evaluate((id) => document.getElementById(id)?.textContent ?? '', id);

async function modelReady(page, pattern = /safetensors/) {
  await page.waitForFunction((p) => new RegExp(p).test(document.getElementById('model')?.textContent ?? ''),
    pattern.source, { timeout: 300_000 });
}

/** The view on screen is of the current model (its version) and the selected image. */
async function viewOfCurrentModel(page, timeout = 300_000) {
  await page.waitForFunction(() => {
    const version = document.getElementById('model')?.dataset.version;
    const views = document.getElementById('views');
    return version && views && views.dataset.key.startsWith(`v${version}/`) && !document.getElementById('busy');
  }, null, { timeout });
}

async function adaptAndFinetune(page) {
  await page.fill('#adapt-steps', '3');
  await page.click('#adapt');
  await page.waitForFunction(() => /adapted 3\/3 steps/.test(document.getElementById('adapt-status')?.textContent ?? ''),
    null, { timeout: 400_000 });
  await page.click('#tab-finetune');
  await page.click('#load-sample');
  await page.waitForFunction(() => document.querySelectorAll('.class-card').length === 4, null, { timeout: 60_000 });
  for (const [id, value] of [['#steps', 4], ['#batch', 4]]) {
    await page.fill(id, String(value));
    await page.dispatchEvent(id, 'change');
  }
  // The class thumbnails stay the same elements through the run: a run that re-created them
  // redrew 48 canvases at its start and end, the page's longest tasks (docs/web-architecture.md).
  await page.evaluate(() => { window.thumbsBefore = [...document.querySelectorAll('.class-thumbs canvas')]; });
  await page.click('#train');
  await page.waitForFunction(() => /finished/.test(document.getElementById('train-status')?.textContent ?? '')
    && document.getElementById('trained-summary'), null, { timeout: 400_000 });
  const thumbs = await page.evaluate(() => {
    const now = document.querySelectorAll('.class-thumbs canvas');
    return { before: window.thumbsBefore.length, now: now.length, kept: window.thumbsBefore.filter((c) => c.isConnected).length };
  });
  assert.ok(thumbs.before > 0 && thumbs.kept === thumbs.before && thumbs.now === thumbs.before,
    `class thumbnails were re-created by the run: ${JSON.stringify(thumbs)}`);
}

// The page never blocks: every model computation runs in the engine worker, so the page's main
// thread only renders. Its own work is bounded by thread time: the longest task of the main
// thread in a Chrome trace of the run, in CPU time, at most 50 ms. Measured 7.4-10 ms on each
// path, with a cargo build or two `yes` processes beside the test on a 2-core machine (2026-12-06,
// `cd tests/e2e && node --test --test-name-pattern="never blocks" worker.test.js`); a task of
// 3e7 square roots on the main thread took 72.5 ms of thread time and failed it. The gaps between
// zero-delay timers are printed beside it but not bounded: they also hold the time the main
// thread waits for a core (SwiftShader's threads, the engine worker, a build beside the test):
// 56-192 ms on SwiftShader in the same runs, whose longest main-thread task took 7.6 ms.
const bound = 50;
for (const [label, query, webgpu] of [['CPU fallback (?cpu)', '?cpu', true],
  ['no WebGPU in the browser', '', false], ['WebGPU (?webgpu, SwiftShader)', '?webgpu', true]]) {
  test(`the page never blocks while the engine adapts and fine-tunes: ${label}`, { timeout: 900_000 }, async () => {
    await withPage(DIST, { webgpu }, async ({ page, url }) => {
      await page.goto(url + query);
      await modelReady(page);
      await page.waitForSelector('#views canvas#attention', { timeout: 300_000 });
      await startLagMonitor(page);
      const stopTrace = await startMainThreadTrace(page);
      await adaptAndFinetune(page);
      const tasks = await stopTrace();
      const lag = await page.evaluate(() => window.maxLag);
      console.log(`${label}: timer gaps over 30 ms [at ms, gap ms]: ${JSON.stringify(await page.evaluate(() => window.lags))}`);
      console.log(`${label}: the main thread's tasks over 50 ms of wall time (Long Tasks API) [start ms, ms]: ${JSON.stringify(await page.evaluate(() => window.longTasks))}`);
      console.log(`${label}: ${await textOf(page, 'device')} · ${await textOf(page, 'train-status')}`);
      console.log(`${label}: max timer gap ${lag.toFixed(1)} ms (not bounded) · main thread: ${tasks.count} tasks traced, `
        + `the longest [thread ms, wall ms]: ${JSON.stringify(tasks.longest)} (bound ${bound} ms of thread time)`);
      assert.ok(tasks.count > 0, 'the trace holds the main thread\'s tasks');
      const [thread, wall] = tasks.longest[0];
      assert.ok(thread <= bound, `the page's main thread ran a task of ${thread} ms of thread time (${wall} ms wall; `
        + `bound ${bound} ms); the longest [thread ms, wall ms]: ${JSON.stringify(tasks.longest)}`);
    });
  });
}

test('a NEPA-B-shaped checkpoint loads by file and by URL (then from the browser cache) and analyses a photo', { timeout: 1_500_000 }, async () => {
  await mkdir(OUT, { recursive: true });
  const path = join(OUT, 'nepa-b.safetensors');
  const size = await stat(path).then((s) => s.size).catch(() => 0) || await writeNepaB(path);
  let served = 0;
  const serveB = async (req, res) => {
    served += 1;
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
    res.end(await readFile(path));
  };
  const shape = /D 768, 12 layers, 12 heads, 224×224 px \/ patch 14/;
  await withPage(DIST, { extra: { '/models/nepa-b.safetensors': serveB } }, async ({ page, url }) => {
    await page.goto(url);
    await modelReady(page);
    // The lag measured is the load's, not startup's (the startup test covers that): the demo
    // model's first map is drawn before the file is given.
    await viewOfCurrentModel(page);
    await startLagMonitor(page);
    const stopTrace = await startMainThreadTrace(page);
    let started = Date.now();
    await page.setInputFiles('#file-input', path);
    await modelReady(page, new RegExp(`nepa-b\\.safetensors: ${shape.source}`));
    const byFile = await textOf(page, 'model');
    console.log(`by file (${(size / 1e6).toFixed(0)} MB): ${byFile} · ${Date.now() - started} ms to the model`);
    started = Date.now();
    await viewOfCurrentModel(page, 1_200_000);
    console.log(`first analysis with NEPA-B: ${Date.now() - started} ms · ${await textOf(page, 'latency')}`);
    console.log(`timer gaps over 30 ms [at ms, gap ms]: ${JSON.stringify(await page.evaluate(() => window.lags))}`);
    const lagByFile = await page.evaluate(() => { const lag = window.maxLag; window.maxLag = 0; return lag; });
    const memoryOf = (text) => Number(/engine memory ([\d.]+) MB/.exec(text)[1]);
    assert.ok(memoryOf(byFile) < 1073.7, `the engine's wasm memory stays under 1 GiB: ${byFile}`);

    await page.fill('#model-url', `${url}models/nepa-b.safetensors`);
    await page.click('#load-url');
    await page.waitForSelector('#download', { timeout: 60_000 });
    await page.waitForFunction((v) => document.getElementById('model')?.dataset.version !== v && !document.getElementById('loading'),
      await page.evaluate(() => document.getElementById('model').dataset.version), { timeout: 600_000 });
    const byUrl = await textOf(page, 'model');
    console.log(`by URL: ${byUrl}`);
    assert.match(byUrl, shape);
    // The second NEPA-B replaced the first in place: the heap's peak stays under 1 GiB.
    assert.ok(memoryOf(byUrl) < 1073.7, `the engine's wasm memory stays under 1 GiB: ${byUrl}`);
    assert.equal(served, 1);
    const lagByUrl = await page.evaluate(() => window.maxLag);
    const tasks = await stopTrace();
    // As in the tests above: the page's own work is bounded by thread time; the timer gaps (which
    // also hold the waits for a core) are printed only.
    console.log(`max timer gap (not bounded): ${lagByFile.toFixed(1)} ms loading by file and analysing, `
      + `${lagByUrl.toFixed(1)} ms loading by URL · main thread: ${tasks.count} tasks traced, `
      + `the longest [thread ms, wall ms]: ${JSON.stringify(tasks.longest)} (bound ${bound} ms of thread time)`);
    assert.ok(tasks.count > 0, 'the trace holds the main thread\'s tasks');
    assert.ok(tasks.longest[0][0] <= bound, `the page's main thread ran a task of ${tasks.longest[0][0]} ms of thread time `
      + `while NEPA-B loaded (bound ${bound} ms); the longest [thread ms, wall ms]: ${JSON.stringify(tasks.longest)}`);

    // After a reload the same URL comes from Cache Storage, not the network; it can be deleted.
    await page.reload();
    await modelReady(page, /nepa-demo/);
    await page.waitForSelector('#cache li.cached', { state: 'attached', timeout: 60_000 });
    await page.fill('#model-url', `${url}models/nepa-b.safetensors`);
    await page.click('#load-url');
    await modelReady(page, /from the browser cache/);
    assert.equal(served, 1, 'the second load did not download');
    await page.click('#cache summary');
    await page.click('#cache .delete-cached');
    await page.waitForFunction(() => !document.querySelector('#cache li.cached'), null, { timeout: 30_000 });
  });
});

test('clicking two patches and switching image at once shows the maps of the last click only', { timeout: 600_000 }, async () => {
  await withPage(DIST, {}, async ({ page, url }) => {
    await page.goto(url);
    await modelReady(page);
    await page.waitForFunction(() => document.querySelectorAll('#gallery .thumb').length === 3, null, { timeout: 60_000 });
    await viewOfCurrentModel(page);
    // Record every view key shown from now on.
    await page.evaluate(() => {
      window.shownKeys = [];
      const views = document.getElementById('views').parentElement;
      new MutationObserver(() => {
        const key = document.getElementById('views')?.dataset.key;
        if (key && key !== window.shownKeys.at(-1)) window.shownKeys.push(key);
      }).observe(views, { attributes: true, subtree: true, childList: true });
    });
    const before = await page.evaluate(() => document.getElementById('views').dataset.key);
    // Three events in one task: patch (1, 1), patch (6, 3), then the second image.
    await page.evaluate(() => {
      const [rows, cols] = document.getElementById('views').dataset.grid.split('x').map(Number);
      const click = (row, col) => {
        const c = document.getElementById('attention');
        const r = c.getBoundingClientRect();
        c.dispatchEvent(new MouseEvent('click', { bubbles: true,
          clientX: r.left + r.width * ((col + 0.5) / cols), clientY: r.top + r.height * ((row + 0.5) / rows) }));
      };
      click(1, 1);
      click(6, 3);
      document.querySelectorAll('#gallery .thumb')[1].click();
    });
    await page.waitForFunction(() => /r6c3$/.test(document.getElementById('views')?.dataset.key ?? '')
      && !document.getElementById('busy'), null, { timeout: 300_000 });
    await page.waitForTimeout(2000);
    const shown = await page.evaluate(() => window.shownKeys.filter((k) => k !== undefined));
    const second = await page.evaluate(() => document.querySelectorAll('#gallery .thumb')[1].title);
    console.log(`before ${before}; shown after the clicks: ${JSON.stringify(shown)}`);
    assert.equal(shown.at(-1).endsWith('r6c3'), true);
    assert.deepEqual(shown.filter((k) => k !== before), [shown.at(-1)], 'no stale view was shown');
    assert.equal(await page.evaluate(() => document.getElementById('views').dataset.image), second);
    assert.match(await page.textContent('.hint'), /Query patch \(6, 3\)/);
  });
});

test('on SwiftShader the page picks the CPU and says why; the switch moves to the adapter', { timeout: 600_000 }, async () => {
  await withPage(DIST, {}, async ({ page, url }) => {
    await page.goto(url);
    await page.waitForFunction(() => /Compute:/.test(document.getElementById('device')?.textContent ?? ''), null, { timeout: 120_000 });
    const device = await textOf(page, 'device');
    console.log(`auto: ${device}`);
    assert.match(device, /CPU \(Flex/);
    assert.match(device, /software rasteriser/i);
    await modelReady(page);
    await page.click('#use-software-gpu');
    await page.waitForFunction(() => /Compute: WebGPU/.test(document.getElementById('device')?.textContent ?? ''), null, { timeout: 120_000 });
    await viewOfCurrentModel(page);
    console.log(`after the switch: ${await textOf(page, 'device')}`);
    assert.equal(await page.$('#use-software-gpu'), null);
  });
});

/** Milliseconds from navigation to: the tabs, the gallery, the model, the first map. */
async function startupTimes(page, url) {
  const started = Date.now();
  await page.goto(url);
  const at = async (fn, timeout = 300_000) => { await page.waitForFunction(fn, null, { timeout, polling: 20 }); return Date.now() - started; };
  const [tabs, gallery, model, map] = await Promise.all([
    at(() => document.getElementById('tab-finetune')),
    at(() => document.querySelectorAll('#gallery .thumb').length === 3),
    at(() => /safetensors/.test(document.getElementById('model')?.textContent ?? '')),
    at(() => document.querySelector('#views canvas#attention')),
  ]);
  return { tabs, gallery, model, map };
}

test('startup: the page is usable before the model has loaded; time to the first map, cold and warm', { timeout: 600_000 }, async () => {
  await withPage(DIST, {}, async ({ page, url }) => {
    const cold = await startupTimes(page, url);
    const warm = await startupTimes(page, url);
    console.log(`startup (ms from navigation) cold: ${JSON.stringify(cold)} · warm: ${JSON.stringify(warm)}`);
    for (const t of [cold, warm]) assert.ok(t.tabs < t.model, `the tabs came before the model: ${JSON.stringify(t)}`);
    // The tabs work while the engine is still busy.
    await page.click('#tab-compare');
    assert.equal(await page.isVisible('#compare'), true);
  });
});
