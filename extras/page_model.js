// model.py's GPT in plain JavaScript: the forward pass the page visualize.py writes runs in the browser.
//
// Read it beside model.py: the same classes (CausalSelfAttention, MLP, Block, GPT), the same parameter
// names (wte, wpe, ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj, ln_f, lm_head) in the same
// order, then sampling (next_token_candidates, sample_next_token) and generation with a KV cache in each
// attention layer (extras/engine.py). The 2026 pieces of extras/modern.py (RoPE, RMSNorm, SwiGLU, ReLU²,
// QK-norm, grouped-query attention, an untied head) are one `if` each where they plug in.
//
// A tensor is a Float32Array in row-major order: x[t * C + c] is channel c of position t, and a Linear's
// weight[o * n_in + i] is PyTorch's weight[o, i]. Sums run in JavaScript's 64-bit numbers and are stored as
// float32, so the logits agree with PyTorch's float32 ones to about 1e-5. Shapes in comments: T positions,
// C = n_embd, V = vocab_size, nh heads, nkv key/value heads, hs = head size (C / nh).
// extras/page.py inlines this file into the page; nothing here touches the page itself.

// ---- Layers --------------------------------------------------------------------------------------------

// One dot product: x[a .. a + n) . w[b .. b + n).
function dot(x, a, w, b, n) {
  let s = 0;
  for (let i = 0; i < n; i++) s += x[a + i] * w[b + i];
  return s;
}

// y = x W^T + b for T rows of x (T, n_in): (T, n_out). The hot loop of the whole model, so it computes
// several sums at once: four positions times two outputs (each weight read serves four positions, each
// input two outputs), or for a single position (generation) four outputs. What is left over, one at a time.
function linear(x, T, weight, bias, nIn, nOut) {
  const y = new Float32Array(T * nOut);
  let t = 0;
  for (; t + 4 <= T; t += 4) {
    const a = t * nIn, b = a + nIn, c = b + nIn, d = c + nIn;
    let o = 0;
    for (; o + 2 <= nOut; o += 2) {
      const w = o * nIn, v = w + nIn;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0, r0 = 0, r1 = 0, r2 = 0, r3 = 0;
      for (let i = 0; i < nIn; i++) {
        const wi = weight[w + i], vi = weight[v + i];
        const xa = x[a + i], xb = x[b + i], xc = x[c + i], xd = x[d + i];
        s0 += xa * wi;
        s1 += xb * wi;
        s2 += xc * wi;
        s3 += xd * wi;
        r0 += xa * vi;
        r1 += xb * vi;
        r2 += xc * vi;
        r3 += xd * vi;
      }
      const bw = bias ? bias[o] : 0, bv = bias ? bias[o + 1] : 0;
      y[t * nOut + o] = s0 + bw;
      y[(t + 1) * nOut + o] = s1 + bw;
      y[(t + 2) * nOut + o] = s2 + bw;
      y[(t + 3) * nOut + o] = s3 + bw;
      y[t * nOut + o + 1] = r0 + bv;
      y[(t + 1) * nOut + o + 1] = r1 + bv;
      y[(t + 2) * nOut + o + 1] = r2 + bv;
      y[(t + 3) * nOut + o + 1] = r3 + bv;
    }
    for (; o < nOut; o++) {
      for (let r = 0; r < 4; r++) {
        y[(t + r) * nOut + o] = dot(x, a + r * nIn, weight, o * nIn, nIn) + (bias ? bias[o] : 0);
      }
    }
  }
  for (; t < T; t++) {
    const a = t * nIn;
    let o = 0;
    for (; o + 4 <= nOut; o += 4) {
      const w0 = o * nIn, w1 = w0 + nIn, w2 = w1 + nIn, w3 = w2 + nIn;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let i = 0; i < nIn; i++) {
        const xi = x[a + i];
        s0 += xi * weight[w0 + i];
        s1 += xi * weight[w1 + i];
        s2 += xi * weight[w2 + i];
        s3 += xi * weight[w3 + i];
      }
      y[t * nOut + o] = s0 + (bias ? bias[o] : 0);
      y[t * nOut + o + 1] = s1 + (bias ? bias[o + 1] : 0);
      y[t * nOut + o + 2] = s2 + (bias ? bias[o + 2] : 0);
      y[t * nOut + o + 3] = s3 + (bias ? bias[o + 3] : 0);
    }
    for (; o < nOut; o++) y[t * nOut + o] = dot(x, a, weight, o * nIn, nIn) + (bias ? bias[o] : 0);
  }
  return y;
}

class Linear {
  constructor(params, name, nIn, nOut) {
    this.weight = params[`${name}.weight`];  // (n_out, n_in)
    this.bias = params[`${name}.bias`] || null;  // (n_out,), or none with bias=False
    this.nIn = nIn;
    this.nOut = nOut;
  }

  forward(x, T) {
    return linear(x, T, this.weight, this.bias, this.nIn, this.nOut);
  }
}

// LayerNorm (GPT-2): subtract each row's mean, divide by its standard deviation, then a gain and a bias.
// RMSNorm (extras/modern.py): divide by the root mean square, then a gain. eps is PyTorch's 1e-5 in both.
class Norm {
  constructor(params, name, kind, width) {
    this.weight = params[`${name}.weight`];
    this.bias = params[`${name}.bias`] || null;  // LayerNorm with bias=True only
    this.centre = kind === "layernorm";
    this.width = width;
  }

  forward(x, T) {
    const n = this.width, y = new Float32Array(T * n);
    for (let t = 0; t < T; t++) {
      const row = t * n;
      let mean = 0;
      if (this.centre) {
        for (let i = 0; i < n; i++) mean += x[row + i];
        mean /= n;
      }
      let sq = 0;
      for (let i = 0; i < n; i++) sq += (x[row + i] - mean) ** 2;
      const scale = 1 / Math.sqrt(sq / n + 1e-5);
      for (let i = 0; i < n; i++) {
        y[row + i] = (x[row + i] - mean) * scale * this.weight[i] + (this.bias ? this.bias[i] : 0);
      }
    }
    return y;
  }
}

// QK-norm's RMSNorm over each head's hs channels, in place: x[at .. at + hs).
function rmsNormHead(x, at, hs, weight) {
  let sq = 0;
  for (let d = 0; d < hs; d++) sq += x[at + d] ** 2;
  const scale = 1 / Math.sqrt(sq / hs + 1e-5);
  for (let d = 0; d < hs; d++) x[at + d] = x[at + d] * scale * weight[d];
}

// RoPE (extras/modern.py): channels d and d + hs/2 of a head form pair d, turned by the angle
// position * 10000^(-2d / hs), in place. The angles are rounded to float32, as PyTorch computes them.
function rotate(x, at, hs, position, invFreq) {
  const half = hs / 2;
  for (let d = 0; d < half; d++) {
    const angle = Math.fround(position * invFreq[d]), cos = Math.cos(angle), sin = Math.sin(angle);
    const x1 = x[at + d], x2 = x[at + d + half];
    x[at + d] = x1 * cos - x2 * sin;
    x[at + d + half] = x2 * cos + x1 * sin;
  }
}

// erf to about 1e-7 (Numerical Recipes' erfc by a Chebyshev fit), for the exact GELU PyTorch uses.
function erf(x) {
  const z = Math.abs(x), t = 1 / (1 + 0.5 * z);
  const erfc = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 +
    t * 0.17087277)))))))));
  return x >= 0 ? 1 - erfc : erfc - 1;
}

const gelu = x => 0.5 * x * (1 + erf(x / Math.SQRT2));
const silu = x => x / (1 + Math.exp(-x));

// ---- The transformer: attention, MLP, block, model -----------------------------------------------------

class CausalSelfAttention {
  constructor(config, params, name) {
    const C = config.n_embd;
    this.n_head = config.n_head;
    this.n_kv_head = config.n_kv_head || config.n_head;  // grouped-query attention: fewer key/value heads
    this.head_size = C / config.n_head;
    this.kv_width = this.n_kv_head * this.head_size;
    this.c_attn = new Linear(params, `${name}.c_attn`, C, C + 2 * this.kv_width);  // q, k, v in one matmul
    this.c_proj = new Linear(params, `${name}.c_proj`, C, C);
    this.q_norm = params[`${name}.q_norm.weight`] || null;  // QK-norm's gains (hs,), with qk_norm only
    this.k_norm = params[`${name}.k_norm.weight`] || null;
    // While generating, generateTokens gives each layer a KV cache of its own (useCaches): the keys and
    // values of the positions seen so far, so that each new token computes only its own.
    this.cache = null;
    this.invFreq = null;
    if (config.position === "rope") {
      const hs = this.head_size;
      this.invFreq = Float32Array.from({ length: hs / 2 }, (_, d) => 10000 ** (-2 * d / hs));
    }
  }

  // x (T, C) -> (T, C). With a cache, x's positions follow those in it, and its keys and values are added
  // to it. maps, if given, receives each head's attention weights: maps[h] is (T, past + T).
  forward(x, T, maps) {
    const C = this.n_head * this.head_size, hs = this.head_size, kvw = this.kv_width;
    const width = C + 2 * kvw, group = this.n_head / this.n_kv_head;
    const cache = this.cache || kvCache(T, kvw);  // without one: these T positions' keys and values only
    const past = cache.length;  // positions before x's
    const qkv = this.c_attn.forward(x, T);  // (T, C + 2 nkv hs): queries, then keys, then values
    for (let t = 0; t < T; t++) {
      const row = t * width;
      for (let h = 0; h < this.n_head; h++) {  // each query head: normalised, then rotated
        if (this.q_norm) rmsNormHead(qkv, row + h * hs, hs, this.q_norm);
        if (this.invFreq) rotate(qkv, row + h * hs, hs, past + t, this.invFreq);
      }
      for (let g = 0; g < this.n_kv_head; g++) {  // each key head, the same way, before it is cached
        if (this.k_norm) rmsNormHead(qkv, row + C + g * hs, hs, this.k_norm);
        if (this.invFreq) rotate(qkv, row + C + g * hs, hs, past + t, this.invFreq);
      }
      cache.k.set(qkv.subarray(row + C, row + C + kvw), (past + t) * kvw);  // (nkv hs) at its position
      cache.v.set(qkv.subarray(row + C + kvw, row + width), (past + t) * kvw);
    }
    cache.length = past + T;
    const y = new Float32Array(T * C), scale = 1 / Math.sqrt(hs);
    const weights = new Float64Array(past + T);
    for (let t = 0; t < T; t++) {
      const keys = past + t + 1;  // causal: position past + t reads keys 0 .. past + t, never later ones
      for (let h = 0; h < this.n_head; h++) {
        const q = t * width + h * hs, kv = Math.floor(h / group) * hs;  // the key/value head of h's group
        let top = -Infinity;
        for (let j = 0; j < keys; j++) {  // scores: q . k_j / sqrt(hs)
          let s = 0;
          for (let d = 0; d < hs; d++) s += qkv[q + d] * cache.k[j * kvw + kv + d];
          weights[j] = s * scale;
          top = Math.max(top, weights[j]);
        }
        let sum = 0;
        for (let j = 0; j < keys; j++) {  // softmax over the keys (minus the largest: exp never overflows)
          weights[j] = Math.exp(weights[j] - top);
          sum += weights[j];
        }
        const out = t * C + h * hs;
        for (let j = 0; j < keys; j++) {  // the weighted sum of the values
          const w = weights[j] / sum;
          if (maps) maps[h][t * (past + T) + j] = w;
          for (let d = 0; d < hs; d++) y[out + d] += w * cache.v[j * kvw + kv + d];
        }
      }
    }
    return this.c_proj.forward(y, T);  // heads side by side (T, C), projected back into the stream
  }
}

// The feed-forward half of a block: GPT-2's GELU (4C wide), ReLU² (4C), or SwiGLU (c_fc holds the gate's
// and the value's columns, h each, side by side: SiLU(gate) * value).
class MLP {
  constructor(config, params, name) {
    const C = config.n_embd;
    this.kind = config.mlp;
    this.hidden = params[`${name}.c_proj.weight`].length / C;  // 4C, or SwiGLU's 8C/3 rounded to 8
    const fcOut = this.kind === "swiglu" ? 2 * this.hidden : this.hidden;
    this.c_fc = new Linear(params, `${name}.c_fc`, C, fcOut);
    this.c_proj = new Linear(params, `${name}.c_proj`, this.hidden, C);
  }

  forward(x, T) {
    const a = this.c_fc.forward(x, T), n = this.hidden;  // (T, 4C) or (T, 2h)
    let h;
    if (this.kind === "swiglu") {
      h = new Float32Array(T * n);
      for (let t = 0; t < T; t++) {
        for (let i = 0; i < n; i++) h[t * n + i] = silu(a[t * 2 * n + i]) * a[t * 2 * n + n + i];
      }
    } else {
      h = a;
      for (let i = 0; i < h.length; i++) {
        h[i] = this.kind === "relu2" ? Math.max(h[i], 0) ** 2 : gelu(h[i]);
      }
    }
    return this.c_proj.forward(h, T);  // (T, C)
  }
}

class Block {
  constructor(config, params, layer) {
    const name = `transformer.h.${layer}`;
    this.ln_1 = new Norm(params, `${name}.ln_1`, config.norm, config.n_embd);
    this.attn = new CausalSelfAttention(config, params, `${name}.attn`);
    this.ln_2 = new Norm(params, `${name}.ln_2`, config.norm, config.n_embd);
    this.mlp = new MLP(config, params, `${name}.mlp`);
  }

  // Pre-norm: attention then MLP, each on a normalised copy, each added back to the residual stream x.
  forward(x, T, maps) {
    const a = this.attn.forward(this.ln_1.forward(x, T), T, maps);
    for (let i = 0; i < x.length; i++) x[i] += a[i];
    const m = this.mlp.forward(this.ln_2.forward(x, T), T);
    for (let i = 0; i < x.length; i++) x[i] += m[i];
    return x;
  }
}

class GPT {
  // config: model.py's GPTConfig as a plain object; params: each state_dict name -> Float32Array.
  constructor(config, params) {
    this.config = config;
    const C = config.n_embd;
    this.wte = params["transformer.wte.weight"];  // (V, C): token embedding
    this.wpe = params["transformer.wpe.weight"] || null;  // (block_size, C): learned positions, not RoPE
    this.h = Array.from({ length: config.n_layer }, (_, layer) => new Block(config, params, layer));
    this.ln_f = new Norm(params, "transformer.ln_f", config.norm, C);
    // Weight tying: the head scores tokens with the embedding matrix itself, unless the model has its own.
    const head = config.tie_weights ? "transformer.wte" : "lm_head";
    this.lm_head = new Linear(params, head, C, config.vocab_size);
  }

  // Token ids idx (T) -> logits (T, V) as a Float32Array. Options: start: the position of idx's first
  // token (0, unless generation continues a cached text); last: only the last position's logits (1, V),
  // what generation needs; attention: also every layer's weights, attention[layer][head] (T, past + T);
  // residuals: also the residual stream (T, C) after the embeddings and after each block, for the logit
  // lens.
  forward(idx, { start = 0, last = false, attention = false, residuals = false } = {}) {
    const T = idx.length, C = this.config.n_embd;
    if (start + T > this.config.block_size) {
      throw new Error(`sequence of length ${start + T} is longer than the model's block_size ` +
        `${this.config.block_size}`);
    }
    const past = this.h[0].attn.cache ? this.h[0].attn.cache.length : 0;  // keys each query may also read
    const x = new Float32Array(T * C);
    for (let t = 0; t < T; t++) {
      for (let c = 0; c < C; c++) {
        x[t * C + c] = this.wte[idx[t] * C + c] + (this.wpe ? this.wpe[(start + t) * C + c] : 0);
      }
    }
    const out = { attention: attention ? [] : null, residuals: residuals ? [x.slice()] : null };
    for (const block of this.h) {
      const maps = attention
        ? Array.from({ length: this.config.n_head }, () => new Float32Array(T * (past + T))) : null;
      block.forward(x, T, maps);
      if (attention) out.attention.push(maps);
      if (residuals) out.residuals.push(x.slice());
    }
    const rows = last ? x.subarray((T - 1) * C) : x;
    out.logits = this.lm_head.forward(this.ln_f.forward(rows, last ? 1 : T), last ? 1 : T);
    return out;
  }

  // The logit lens: the final norm and the head applied to one position's residual stream (C), as if the
  // model stopped there: (V).
  lens(stream) {
    return this.lm_head.forward(this.ln_f.forward(stream, 1), 1);
  }
}

// One attention layer's keys and values, for up to `length` positions of `width` (nkv hs) numbers each
// (extras/engine.py's KVCache): allocated once, filled in place.
function kvCache(length, width) {
  return { k: new Float32Array(length * width), v: new Float32Array(length * width), length: 0 };
}

// A fresh KV cache for each attention layer of model, for block_size positions (extras/engine.py's
// kv_caches).
function kvCaches(model) {
  const c = model.config, width = (c.n_kv_head || c.n_head) * (c.n_embd / c.n_head);
  return model.h.map(() => kvCache(c.block_size, width));
}

// Give each attention layer its cache, caches[layer], or none (null): a plain forward pass. Whoever runs the
// model sets the caches it wants first, since the page's figures and its writer take turns with one model.
function useCaches(model, caches) {
  model.h.forEach((block, layer) => { block.attn.cache = caches ? caches[layer] : null; });
}

// ---- Sampling: model.py's next_token_candidates and sample_next_token ----------------------------------

// The tokens sampling may pick after logits (V) and their probabilities: softmax(top-k(logits) / T).
// top_k keeps the k largest (most likely first; k clamped to V); otherwise every token, in id order.
// Temperature 0 is greedy: the single most likely token, probability 1.
function nextTokenCandidates(logits, temperature, topK) {
  const V = logits.length;
  if (temperature === 0) topK = 1;
  let ids;
  if (topK !== null && topK !== undefined && topK < V) {
    const byLogit = (a, b) => logits[b] - logits[a] || a - b;  // most likely first; ties: the lower id
    ids = Array.from({ length: V }, (_, i) => i).sort(byLogit).slice(0, topK);
  } else {
    ids = Array.from({ length: V }, (_, i) => i);
  }
  const scaled = ids.map(i => logits[i] / (temperature || 1));
  const top = scaled.reduce((a, b) => Math.max(a, b), -Infinity);  // subtracted: exp never overflows
  const e = scaled.map(s => Math.exp(s - top));
  const sum = e.reduce((a, b) => a + b, 0);
  return { ids, probs: e.map(p => p / sum) };
}

// torch.Generator's random numbers: a Mersenne Twister (mt19937) seeded as torch.manual_seed seeds it, and
// torch.rand's float32 made from 24 of each output's 32 bits. So a seed draws here exactly the numbers it
// draws in generate.py.
class TorchGenerator {
  constructor(seed) {
    const s = new Uint32Array(624);
    s[0] = seed >>> 0;
    for (let j = 1; j < 624; j++) s[j] = Math.imul(1812433253, s[j - 1] ^ (s[j - 1] >>> 30)) + j;
    this.state = s;
    this.next = 624;
  }

  rand() {  // uniform in [0, 1)
    const s = this.state;
    if (this.next >= 624) {  // all 624 words used: twist the state
      for (let k = 0; k < 624; k++) {
        const y = (s[k] & 0x80000000) | (s[(k + 1) % 624] & 0x7fffffff);
        s[k] = s[(k + 397) % 624] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
      }
      this.next = 0;
    }
    let y = s[this.next++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return ((y >>> 0) & 0xffffff) / 16777216;
  }
}

// Pick the next token after logits (V): one uniform number u, looked up in the running sum of the
// candidates' probabilities. Returns the id, u (none when greedy) and the candidates it was drawn from.
function sampleNextToken(logits, temperature, topK, generator) {
  const c = nextTokenCandidates(logits, temperature, topK);
  if (temperature === 0) return { id: c.ids[0], u: undefined, candidates: c };
  const u = generator.rand();
  let cumulative = 0, choice = 0;
  for (; choice < c.ids.length - 1; choice++) {  // the first candidate whose running sum passes u
    cumulative += c.probs[choice];
    if (cumulative > u) break;
  }
  return { id: c.ids[choice], u, candidates: c };
}

// ---- Generation: extras/engine.py's generate_tokens, window "shift" ------------------------------------

// Yield maxNewTokens draws ({id, u, candidates}), continuing the token ids idx. A KV cache in each layer
// keeps earlier positions' keys and values, so each step computes only the newest position. When the text
// outgrows the context, the window keeps its last half and refills the caches from it in one pass, as
// generate.py does. prefilled: {caches, logits} of a forward pass over idx (at most block_size tokens) made
// already (the page's figures make one), used instead of a second one.
function* generateTokens(model, idx, maxNewTokens, temperature, topK, generator, prefilled = null) {
  if (maxNewTokens <= 0) return;
  const context = model.config.block_size;
  let text = Array.from(idx).slice(-context);  // the running text the model sees: at most its window
  let { caches, logits } = prefilled || {};
  if (!prefilled) {
    caches = kvCaches(model);
    useCaches(model, caches);
    logits = model.forward(text, { last: true }).logits;  // the prompt in one pass
  }
  for (let i = 0; i < maxNewTokens; i++) {
    const draw = sampleNextToken(logits, temperature, topK, generator);
    yield draw;
    if (i === maxNewTokens - 1) break;  // nothing more to predict
    text.push(draw.id);
    if (text.length > context) {  // the window is full: keep its last half and empty the caches
      text = text.slice(-Math.max(1, Math.floor(context / 2)));
      for (const cache of caches) cache.length = 0;
    }
    useCaches(model, caches);  // between two draws, the page may have run the model with others
    const start = caches[0].length;
    logits = start === 0 ? model.forward(text, { last: true }).logits  // the whole window in one pass
      : model.forward([draw.id], { start, last: true }).logits;  // only the newest token
  }
  useCaches(model, null);
}
