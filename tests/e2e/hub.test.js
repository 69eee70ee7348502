// Models from a hub by id, against a loopback hub that behaves like huggingface.co: `resolve`
// answers 302 to a second origin (the file host) that serves the bytes with CORS, ETag,
// X-Repo-Commit, Content-Length and Range; unknown ids and files are 404s with the hub's
// X-Error-Code. The official NEPA-B-sft id serves a random checkpoint of its shapes (1,000
// classes) whose head makes five named classes the most probable, with the official
// preprocessor_config.json; the page loads it (?hub=), shows those five classes with their
// probabilities, loads it a second time from Cache Storage without a request, and keeps it
// through a missing id, a missing config.json, a preprocessor it cannot follow and a model over
// the download cap.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { createReadStream } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { withPage } from './browser.js';
import { writeNepaB } from './nepa-b.js';

const ROOT = join(import.meta.dirname, '../..');
const DIST = process.env.NEPA_DIST ?? join(ROOT, 'dist');
const OUT = join(ROOT, 'target/e2e');
const SFT = 'SixAILab/nepa-base-patch14-224-sft';
const COMMIT = '0123456789abcdef0123456789abcdef01234567';
const CLASSES = 1000;
// The five classes the head favours (bias 6, 5, 4, 3, 2; every other class 0).
const FAVOURED = [[504, 'coffee mug'], [967, 'espresso'], [409, 'analog clock'], [1, 'goldfish'], [999, 'toilet tissue']];

function headBias() {
  const bias = new Float32Array(CLASSES);
  FAVOURED.forEach(([i], rank) => { bias[i] = 6 - rank; });
  return bias;
}

/** softmax(bias) of the favoured classes, in %: what the page must show (the weights are ~0). */
function expectedPercent() {
  const bias = headBias();
  const sum = bias.reduce((s, b) => s + Math.exp(b), 0);
  return FAVOURED.map(([i]) => (100 * Math.exp(bias[i])) / sum);
}

/** An -sft config.json as the official code writes it; id2label in reverse key order. */
function sftConfig() {
  const names = Array.from({ length: CLASSES }, (_, i) => `imagenet class ${i}`);
  for (const [i, name] of FAVOURED) names[i] = name;
  const id2label = {};
  for (let i = CLASSES - 1; i >= 0; i--) id2label[String(i)] = names[i];
  return JSON.stringify({
    architectures: ['ViTNepaForImageClassification'], model_type: 'vit_nepa', hidden_size: 768,
    num_hidden_layers: 12, num_attention_heads: 12, intermediate_size: 3072, image_size: 224,
    patch_size: 14, num_channels: 3, qkv_bias: true, qk_norm: true, qk_norm_affine: false,
    is_causal: false, hidden_act: 'gelu', layer_norm_eps: 1e-6, id2label,
    label2id: Object.fromEntries(names.map((n, i) => [n, i])), torch_dtype: 'float32',
  });
}

/** The official -sft repositories' test transform: resize to 224 × 224, bilinear, mean/std 0.5. */
const PREPROCESSOR = JSON.stringify({
  do_resize: true, size: { height: 224, width: 224 }, resample: 2, do_rescale: true,
  rescale_factor: 1 / 255, do_normalize: true, image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5],
  image_processor_type: 'ViTImageProcessor',
});
/** A transform the page does not follow (a centre crop): refused before the weights. */
const CROP_PREPROCESSOR = JSON.stringify({ ...JSON.parse(PREPROCESSOR), do_center_crop: true, crop_size: { height: 224, width: 224 } });

/** The hub files (config.json, preprocessor_config.json, weights) kept in Cache Storage. */
const cachedHubFiles = (page) => page.evaluate(async () => {
  const files = [];
  for (const name of await caches.keys()) {
    const cache = await caches.open(name);
    for (const request of await cache.keys()) if (request.url.includes('/resolve/')) files.push(request.url.split('/').pop());
  }
  return files.sort();
});

const LARGE_CONFIG = JSON.stringify({
  model_type: 'vit_nepa', hidden_size: 1024, num_hidden_layers: 24, num_attention_heads: 16,
  intermediate_size: 4096, image_size: 224, patch_size: 14, qk_norm_affine: true,
});

const EXPOSE = 'X-Repo-Commit,X-Request-Id,X-Error-Code,X-Error-Message,ETag,Link,Accept-Ranges,Content-Range,X-Linked-Size,X-Linked-ETag';

/** Starts an HTTP server on loopback; `handle(req, res)` answers. Returns { url, close }. */
async function listen(handle) {
  const server = createServer(handle);
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => { server.close(); server.closeAllConnections(); },
  };
}

/**
 * The hub and its file host. `repos` maps an id to its files: `{ bytes }` (a Buffer), `{ path,
 * size }` (a file on disk) or `{ announce }` (a Content-Length and no body). Counts requests.
 */
async function startHub(repos) {
  const counts = { hub: 0, files: 0, paths: [] };
  const blobs = new Map();
  const files = await listen(async (req, res) => {
    counts.files += 1;
    counts.paths.push(`file ${req.url}`);
    const blob = blobs.get(new URL(req.url, 'http://x').pathname);
    const cors = { 'access-control-allow-origin': '*', 'access-control-expose-headers': EXPOSE };
    if (!blob) return res.writeHead(404, cors).end('not found');
    const size = blob.announce ?? blob.size ?? blob.bytes.length;
    const headers = { ...cors, etag: `"${blob.etag}"`, 'x-repo-commit': COMMIT, 'accept-ranges': 'bytes',
      'content-type': 'application/octet-stream' };
    if (blob.announce) {
      res.writeHead(200, { ...headers, 'content-length': size });
      return res.flushHeaders();
    }
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const [start, end] = range ? [Number(range[1]), range[2] ? Number(range[2]) : size - 1] : [0, size - 1];
    res.writeHead(range ? 206 : 200, { ...headers, 'content-length': end - start + 1,
      ...(range ? { 'content-range': `bytes ${start}-${end}/${size}` } : {}) });
    if (blob.bytes) return res.end(blob.bytes.subarray(start, end + 1));
    createReadStream(blob.path, { start, end }).pipe(res);
  });
  const hub = await listen((req, res) => {
    counts.hub += 1;
    counts.paths.push(`hub ${req.url}`);
    const cors = { 'access-control-allow-origin': '*', 'access-control-expose-headers': EXPOSE };
    const m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(new URL(req.url, 'http://x').pathname);
    const refuse = (code, message) => res.writeHead(404, { ...cors, 'x-error-code': code, 'x-error-message': message })
      .end(message);
    if (!m || !repos[m[1]]) return refuse('RepoNotFound', 'Repository not found');
    if (m[2] !== 'main' && m[2] !== COMMIT) return refuse('RevisionNotFound', 'Invalid rev id');
    const file = repos[m[1]][m[3]];
    if (!file) return refuse('EntryNotFound', `${m[3]} does not exist on "main"`);
    const etag = `${m[1]}/${m[3]}`.replace(/\W/g, '');
    blobs.set(`/blobs/${etag}`, { ...file, etag });
    res.writeHead(302, { ...cors, location: `${files.url}/blobs/${etag}`, 'x-repo-commit': COMMIT,
      etag: `"${etag}"`, 'x-linked-etag': `"${etag}"` }).end();
  });
  return { url: hub.url, counts, close: () => { hub.close(); files.close(); } };
}

async function errors(page) {
  return page.$$eval('#errors .error', (ps) => ps.map((p) => p.textContent));
}

async function dismiss(page) {
  await page.click('#errors button');
  await page.waitForSelector('#errors', { state: 'detached' });
}

const modelText = (page) => page.textContent('#model');
const modelVersion = (page) => page.evaluate(() => document.getElementById('model')?.dataset.version);

/** Types an id and loads it; waits until the load ends (a new model or an error). */
async function loadId(page, id) {
  const before = await modelVersion(page);
  await page.fill('#hub-id', id);
  await page.click('#load-hub');
  await page.waitForFunction((v) => !document.getElementById('loading')
    && (document.getElementById('model')?.dataset.version !== v || document.getElementById('errors')),
  before, { timeout: 900_000 });
}

/** The top-5 list of the current model (for another photo than `previous`): [[name, percent], …]. */
async function topClasses(page, previous = null) {
  const version = await modelVersion(page);
  const other = previous ? `:not([data-key="${previous}"])` : '';
  await page.waitForSelector(`#top-classes ol[data-key^="${version}-"]${other}, #top-classes .error`, { timeout: 900_000 });
  assert.ok(!(await page.$('#top-classes .error')), `no classes: ${await page.textContent('#top-classes')}`);
  return page.$$eval('#top-classes li.top-class', (lis) => lis.map((li) => [
    li.querySelector('.class-name').textContent, Number(li.querySelector('.class-p').textContent.replace('%', ''))]));
}

function assertTopFive(shown) {
  const expected = expectedPercent();
  assert.deepEqual(shown.map(([name]) => name), FAVOURED.map(([, name]) => name), 'the five classes, by name, most probable first');
  shown.forEach(([name, p], i) => assert.ok(Math.abs(p - expected[i]) <= 0.2,
    `${name}: ${p}% shown, softmax of the head gives ${expected[i].toFixed(2)}%`));
}

test('hub ids: the -sft model loads through the redirect, shows its top-5 classes, comes back from the cache without a request; bad ids are clear and the model stays', { timeout: 2_400_000 }, async () => {
  await mkdir(OUT, { recursive: true });
  const path = join(OUT, 'nepa-b-sft.safetensors');
  const size = await stat(path).then((s) => s.size).catch(() => 0) || await writeNepaB(path, { bias: headBias() });
  const hub = await startHub({
    [SFT]: {
      'config.json': { bytes: Buffer.from(sftConfig()) },
      'preprocessor_config.json': { bytes: Buffer.from(PREPROCESSOR) },
      'model.safetensors': { path, size },
    },
    'test/no-config': { 'model.safetensors': { path, size } },
    'test/center-crop': {
      'config.json': { bytes: Buffer.from(sftConfig()) },
      'preprocessor_config.json': { bytes: Buffer.from(CROP_PREPROCESSOR) },
      'model.safetensors': { path, size },
    },
    'test/nepa-large': { 'config.json': { bytes: Buffer.from(LARGE_CONFIG) }, 'model.safetensors': { announce: 1_216_000_000 } },
  });
  try {
    // The fake hub itself: a redirect to another origin, and Range on the file host.
    const resolved = await fetch(`${hub.url}/${SFT}/resolve/main/model.safetensors`, { redirect: 'manual' });
    assert.equal(resolved.status, 302);
    assert.notEqual(new URL(resolved.headers.get('location')).origin, hub.url);
    const head = await fetch(resolved.headers.get('location'), { headers: { range: 'bytes=0-7' } });
    assert.equal(head.status, 206);
    assert.equal(Buffer.from(await head.arrayBuffer()).length, 8);
    const before = { ...hub.counts };

    await withPage(DIST, {}, async ({ page, url }) => {
      await page.goto(`${url}?hub=${hub.url}`);
      await page.waitForFunction(() => /nepa-demo/.test(document.getElementById('model')?.textContent ?? ''), null, { timeout: 300_000 });
      await page.waitForFunction(() => document.querySelectorAll('#gallery .thumb').length === 3, null, { timeout: 120_000 });
      assert.match(await page.textContent('#hub'), new RegExp(`\\(${hub.url.replace(/\./g, '\\.')}\\)`), 'the page names the hub it uses');

      // The picker fills the id field with the official model.
      await page.selectOption('#hub-model', SFT);
      assert.equal(await page.inputValue('#hub-id'), SFT);
      let started = Date.now();
      const demo = await modelVersion(page);
      await page.click('#load-hub');
      await page.waitForSelector('#download', { timeout: 120_000 });
      await page.waitForFunction((v) => document.getElementById('model')?.dataset.version !== v
        && !document.getElementById('loading'), demo, { timeout: 900_000 });
      assert.equal(await page.$('#errors'), null, 'no error');
      const loaded = await modelText(page);
      console.log(`loaded in ${Date.now() - started} ms: ${loaded}`);
      assert.match(loaded, /SixAILab\/nepa-base-patch14-224-sft@main: D 768, 12 layers, 12 heads, 224×224 px \/ patch 14 · classifier, 1000 classes/);
      assert.equal(hub.counts.hub - before.hub, 3, `config.json, preprocessor_config.json and model.safetensors resolved once each: ${hub.counts.paths.join(', ')}`);
      assert.equal(hub.counts.files - before.files, 3, 'all fetched from the file host after the redirect');
      assert.deepEqual(await cachedHubFiles(page), ['config.json', 'model.safetensors', 'preprocessor_config.json'], 'all three kept');
      started = Date.now();
      const shown = await topClasses(page);
      console.log(`top-5 in ${Date.now() - started} ms: ${JSON.stringify(shown)}`);
      assertTopFive(shown);
      await page.waitForSelector('#views canvas#attention', { timeout: 900_000 });

      // A second load (after a reload, so the page starts afresh) comes from Cache Storage.
      await page.reload();
      await page.waitForFunction(() => /nepa-demo/.test(document.getElementById('model')?.textContent ?? ''), null, { timeout: 300_000 });
      await page.waitForSelector('#cache li.cached', { state: 'attached', timeout: 60_000 });
      assert.match(await page.textContent('#cache'), /SixAILab\/nepa-base-patch14-224-sft@main \(34\d\.\d MB\)/, 'listed by id and revision');
      const counted = { ...hub.counts };
      await loadId(page, SFT);
      assert.match(await page.textContent('#model-load'), /from the browser cache/);
      assert.match(await modelText(page), /classifier, 1000 classes/);
      assert.deepEqual([hub.counts.hub, hub.counts.files], [counted.hub, counted.files], 'no request for a cached model');
      assertTopFive(await topClasses(page));

      // Clear messages; the loaded model stays.
      const kept = [await modelText(page), await modelVersion(page)];
      const stays = async () => {
        assert.deepEqual([await modelText(page), await modelVersion(page)], kept, 'the loaded model stays');
        assert.equal((await topClasses(page)).length, 5);
      };
      await loadId(page, 'SixAILab/no-such-model');
      assert.deepEqual(await errors(page), [`there is no model \`SixAILab/no-such-model\` on ${hub.url} (HTTP 404); check the id `
        + '(private and gated models cannot be loaded here); nothing was loaded; the current model is kept']);
      await dismiss(page);
      await stays();

      const fileRequests = hub.counts.files;
      await loadId(page, 'test/no-config');
      assert.deepEqual(await errors(page), [`\`test/no-config@main\` has no config.json on ${hub.url} (HTTP 404); the page `
        + 'needs it for the architecture and the class names; nothing was loaded; the current model is kept']);
      assert.equal(hub.counts.files, fileRequests, 'the weights are not downloaded without a config');
      await dismiss(page);
      await stays();

      const hubRequests = hub.counts.hub;
      await loadId(page, 'test/center-crop');
      assert.deepEqual(await errors(page), ['test/center-crop@main: invalid config: preprocessor_config.json: do_center_crop is true; nepa '
        + 'reads the resize-only transform of ViTImageProcessor; nothing was loaded; the current model is kept']);
      assert.equal(hub.counts.hub - hubRequests, 2, `the weights are not requested: ${hub.counts.paths.slice(-2).join(', ')}`);
      await dismiss(page);
      await stays();

      await loadId(page, 'test/nepa-large');
      const large = await errors(page);
      console.log(`large: ${JSON.stringify(large)}`);
      assert.equal(large.length, 1);
      assert.match(large[0], /the server announces 1216\.0 MB \(Content-Length\), but the page accepts at most 1 GiB/);
      await dismiss(page);
      await stays();

      // The engine still holds it: another photo gets its classes (the head favours the same five).
      const first = await page.getAttribute('#top-classes ol', 'data-key');
      await page.click('#gallery .thumb >> nth=1');
      assertTopFive(await topClasses(page, first));

      // The kept model can be deleted from the list.
      await page.click('#cache summary');
      await page.click('#cache .delete-cached');
      await page.waitForFunction(() => !document.querySelector('#cache li.cached'), null, { timeout: 30_000 });
      assert.deepEqual(await cachedHubFiles(page), [], 'its config.json and preprocessor_config.json go with it');
    });
  } finally {
    hub.close();
  }
});
