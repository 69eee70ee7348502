// A NEPA-B-shaped checkpoint (official key names, 224 px / patch 14, D 768, 12 layers, GELU MLP,
// non-affine QK-norm: the shapes of SixAILab/nepa-base-patch14-224), with small random weights;
// optionally with a classifier head (the shapes of the -sft model). Generated for the tests,
// never committed: about 344 MB.
import { open } from 'node:fs/promises';

const D = 768, LAYERS = 12, INTERMEDIATE = 3072, PATCH = 14;

function tensors(head) {
  const t = [['embeddings.cls_token', [1, 1, D], 'normal'],
    ['embeddings.patch_embeddings.projection.weight', [D, 3, PATCH, PATCH], 'normal'],
    ['embeddings.patch_embeddings.projection.bias', [D], 'zero']];
  for (let i = 0; i < LAYERS; i++) {
    const p = `encoder.layer.${i}.`;
    t.push([p + 'layernorm_before.weight', [D], 'one'], [p + 'layernorm_before.bias', [D], 'zero']);
    for (const m of ['query', 'key', 'value']) {
      t.push([`${p}attention.attention.${m}.weight`, [D, D], 'normal'], [`${p}attention.attention.${m}.bias`, [D], 'zero']);
    }
    t.push([p + 'attention.output.dense.weight', [D, D], 'normal'], [p + 'attention.output.dense.bias', [D], 'zero'],
      [p + 'layer_scale.lambda1', [D], 'scale'],
      [p + 'layernorm_after.weight', [D], 'one'], [p + 'layernorm_after.bias', [D], 'zero'],
      [p + 'intermediate.up_proj.weight', [INTERMEDIATE, D], 'normal'], [p + 'intermediate.up_proj.bias', [INTERMEDIATE], 'zero'],
      [p + 'output.dense.weight', [D, INTERMEDIATE], 'normal'], [p + 'output.dense.bias', [D], 'zero'],
      [p + 'output.layer_scale.lambda1', [D], 'scale']);
  }
  t.push(['layernorm.weight', [D], 'one'], ['layernorm.bias', [D], 'zero']);
  if (!head) return t;
  // A classifier (`ViTNepaForImageClassification`): prefixed backbone, fc_norm and the head.
  const named = t.map(([name, ...rest]) => ['vit_nepa.' + name, ...rest]);
  named.push(['fc_norm.weight', [D], 'one'], ['fc_norm.bias', [D], 'zero'],
    ['classifier.weight', [head.bias.length, D], 'tiny'], ['classifier.bias', [head.bias.length], head.bias]);
  return named;
}

function fill(kind, n) {
  if (kind instanceof Float32Array) return kind;
  const a = new Float32Array(n);
  if (kind === 'one') a.fill(1);
  else if (kind === 'scale') a.fill(0.1);
  else if (kind === 'normal') for (let i = 0; i < n; i++) a[i] = (Math.random() - 0.5) * 0.04;
  else if (kind === 'tiny') for (let i = 0; i < n; i++) a[i] = (Math.random() - 0.5) * 2e-4;
  return a;
}

/**
 * Writes the checkpoint to `path`; returns its size in bytes. With `head = { bias }` it is a
 * NEPA-B-sft-shaped classifier (official key names) with one class per bias entry: the head's
 * weights are tiny (±1e-4), so the class probabilities are close to softmax(bias).
 */
export async function writeNepaB(path, head = null) {
  const list = tensors(head);
  const header = {};
  let offset = 0;
  for (const [name, shape] of list) {
    const bytes = shape.reduce((a, b) => a * b, 1) * 4;
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = Buffer.from(JSON.stringify(header));
  json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const file = await open(path, 'w');
  try {
    await file.write(len);
    await file.write(json);
    for (const [, shape, kind] of list) {
      const a = fill(kind, shape.reduce((x, y) => x * y, 1));
      await file.write(Buffer.from(a.buffer, a.byteOffset, a.byteLength));
    }
  } finally {
    await file.close();
  }
  return 8 + json.length + offset;
}
