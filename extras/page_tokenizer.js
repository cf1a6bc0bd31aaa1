// The checkpoint's tokenizer in plain JavaScript, for the page visualize.py writes: text to token ids and
// back, as extras/tokenizer.py (characters) and extras/bpe.py (byte-level BPE) do it in Python.
// extras/page.py inlines this file into the page, beside extras/page_model.js.

// One token per character: stoi maps each character of the vocabulary to its id, itos maps an id back.
class CharTokenizer {
  constructor(chars) {
    this.kind = "char";
    this.itos = [...chars];  // by code point, as Python iterates a str (an emoji is one character)
    this.stoi = new Map(this.itos.map((ch, i) => [ch, i]));
    this.vocab_size = this.itos.length;
  }

  // The distinct characters of text that are not in the vocabulary, sorted as Python sorts them.
  unknown(text) {
    const unknown = new Set([...text].filter(ch => !this.stoi.has(ch)));
    return [...unknown].sort((a, b) => a.codePointAt(0) - b.codePointAt(0));
  }

  encode(text) {
    const unknown = this.unknown(text);
    if (unknown.length) {
      throw new Error(`characters not in the vocabulary: ${unknown.map(c => JSON.stringify(c)).join(" ")}`);
    }
    return [...text].map(ch => this.stoi.get(ch));
  }

  decode(ids) {
    return ids.map(i => this.itos[i]).join("");
  }

  label(id) {  // the token's text, for a chip
    return this.itos[id];
  }
}

// Byte-level BPE (GPT-2's, trained by the Hugging Face `tokenizers` library in extras/bpe.py).
//
// Encoding, as the library does it: split the text into words with GPT-2's pattern (letters, digits, other
// symbols, whitespace, each with at most one space before it); write each word as its UTF-8 bytes, one
// token per byte; then merge neighbouring tokens, always the pair whose merge was learned first, until no
// learned merge applies. The vocabulary stores each token as printable stand-in characters, one per byte
// (byteOfSymbol): " the" is "Ġthe".

// GPT-2's pattern. \s and \S are spelled out as Unicode's White_Space, which is what the library's regex
// engine means by \s (JavaScript's \s also counts U+FEFF and misses U+0085).
const WHITE = "\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const WORDS = new RegExp(`'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^${WHITE}\\p{L}\\p{N}]+` +
  `|[${WHITE}]+(?![^${WHITE}])|[${WHITE}]+`, "gu");

// Each stand-in character back to the byte it stands for (extras/bpe.py: byte_of_symbol): the printable
// Latin-1 bytes are themselves, the other 68 are the characters from U+0100 on, in byte order.
function byteOfSymbol() {
  const printable = b => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const table = new Map();
  let n = 0;
  for (let b = 0; b < 256; b++) table.set(String.fromCharCode(printable(b) ? b : 256 + n++), b);
  return table;
}

class BPETokenizer {
  // vocab: each token's stand-in string, by id; merges: [id a, id b] pairs in the order they were learned.
  constructor(vocab, merges) {
    this.kind = "bpe";
    this.vocab_size = vocab.length;
    const byte = byteOfSymbol(), id = new Map(vocab.map((s, i) => [s, i]));
    this.bytes = vocab.map(s => Uint8Array.from([...s], ch => byte.get(ch)));  // what each token stands for
    this.byteToken = new Array(256);  // the single-byte token of each byte value
    for (const [s, i] of id) if (this.bytes[i].length === 1) this.byteToken[this.bytes[i][0]] = i;
    this.merges = new Map();  // "a b" -> [rank, the merged token's id]
    merges.forEach(([a, b], rank) => this.merges.set(`${a} ${b}`, [rank, id.get(vocab[a] + vocab[b])]));
    this.words = new Map();  // words already encoded: text repeats its words
  }

  unknown() {
    return [];  // byte-level BPE encodes any text
  }

  encodeWord(word) {
    let ids = [...new TextEncoder().encode(word)].map(b => this.byteToken[b]);
    for (;;) {
      let best = null;  // the earliest learned merge among neighbouring pairs
      for (let i = 0; i + 1 < ids.length; i++) {
        const m = this.merges.get(`${ids[i]} ${ids[i + 1]}`);
        if (m && (best === null || m[0] < best[0])) best = m;
      }
      if (best === null) return ids;
      const merged = [];  // every occurrence of that pair, left to right
      for (let i = 0; i < ids.length; i++) {
        const m = i + 1 < ids.length && this.merges.get(`${ids[i]} ${ids[i + 1]}`);
        if (m && m[0] === best[0]) {
          merged.push(best[1]);
          i++;
        } else {
          merged.push(ids[i]);
        }
      }
      ids = merged;
    }
  }

  encode(text) {
    const ids = [];
    for (const [word] of text.matchAll(WORDS)) {
      if (!this.words.has(word)) this.words.set(word, this.encodeWord(word));
      ids.push(...this.words.get(word));
    }
    return ids;
  }

  // The bytes of the ids, read as UTF-8; "\ufffd" where they end inside a character, as the library does.
  decode(ids) {
    const bytes = new Uint8Array(ids.reduce((n, i) => n + this.bytes[i].length, 0));
    let at = 0;
    for (const i of ids) {
      bytes.set(this.bytes[i], at);
      at += this.bytes[i].length;
    }
    return new TextDecoder().decode(bytes);
  }
}
