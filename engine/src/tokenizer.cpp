// Byte-level BPE and SentencePiece tokenizers: see tokenizer.h. Pipeline of encode(): special-token partition
// (only with parse_special) -> byte-level BPE: lenient UTF-8 decode -> pre-tokenizer words -> BPE merges by rank
// within each word; SentencePiece: spaces to "▁" (and one before the text) -> characters merged pairwise,
// the pair whose merged piece has the highest score first -> pieces without a token as <0xXX> byte tokens.
// What must not go in here: GGUF parsing, chat templates, sampling.
#include "tokenizer.h"

#include <algorithm>
#include <array>
#include <unordered_map>
#include <unordered_set>

#include "pre_tokenizer.h"
#include "unicode.h"

namespace sluice::engine {

namespace {

// tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
enum token_type : int32_t {
  type_undefined = 0,
  type_normal = 1,
  type_unknown = 2,
  type_control = 3,
  type_user_defined = 4,
  type_unused = 5,
  type_byte = 6
};

// GPT-2's byte-level alphabet: bytes that are printable Latin-1 stand for themselves; the other 68 bytes
// are shifted to U+0100.. in byte order, so every byte has a visible, non-space stand-in character.
std::array<char32_t, 256> make_byte_to_cpt() {
  std::array<char32_t, 256> m{};
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    m[b] = printable ? static_cast<char32_t>(b) : next++;
  }
  return m;
}

// Open-addressing map from a merge pair (left id, right id) to its rank and resulting token.
class merge_table {
 public:
  struct entry {
    uint64_t key = empty_key;
    int32_t rank = 0;
    token_id result = 0;
  };
  void build(std::size_t n) {
    std::size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    slots_.assign(cap, entry{});
    mask_ = cap - 1;
  }
  void insert(token_id l, token_id r, int32_t rank, token_id result) {
    uint64_t k = key(l, r);
    for (std::size_t i = hash(k) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == k) return;  // keep the first (lowest) rank of a duplicated merge
      if (slots_[i].key == empty_key) {
        slots_[i] = {k, rank, result};
        return;
      }
    }
  }
  const entry* find(token_id l, token_id r) const {
    uint64_t k = key(l, r);
    for (std::size_t i = hash(k) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == k) return &slots_[i];
      if (slots_[i].key == empty_key) return nullptr;
    }
  }

 private:
  static constexpr uint64_t empty_key = ~0ull;
  static uint64_t key(token_id l, token_id r) { return (uint64_t(uint32_t(l)) << 32) | uint32_t(r); }
  static std::size_t hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return static_cast<std::size_t>(k);
  }
  std::vector<entry> slots_;
  std::size_t mask_ = 0;
};

const std::string empty_string;

struct string_hash {  // transparent, so string_view lookups need no temporary std::string
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// BPE working state for one word: symbols in a doubly linked list over the word's bytes, and a min-heap of
// candidate merges of neighbours ordered by (rank, left position). Reused across the words of one encode().
struct bpe_symbol {
  token_id id;  // -1 once merged into its left neighbour (or when the byte has no token)
  int32_t prev, next;
};
struct bpe_candidate {
  int32_t rank, left, right;
  token_id left_id, right_id;  // the pair as it was when queued; a mismatch later means it is stale
  bool operator>(const bpe_candidate& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
};
struct bpe_scratch {
  std::vector<bpe_symbol> sym;
  std::vector<bpe_candidate> heap;
};

// SentencePiece working state: one symbol per UTF-8 character, merged in place (n grows, the right one empties).
struct spm_symbol {
  uint32_t begin, n;
  int32_t prev, next;
};
struct spm_candidate {
  float score;
  int32_t left, right;
  uint32_t size;  // bytes of the merged piece; a mismatch later means it is stale
  bool operator<(const spm_candidate& o) const { return score != o.score ? score < o.score : left > o.left; }
};

const std::string_view spm_space = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

}  // namespace

struct tokenizer::impl {
  tokenizer_data data;
  bool spm = false;                        // SentencePiece (model "llama")
  std::unordered_map<std::string, token_id, string_hash, std::equal_to<>> piece_to_id;  // SentencePiece pieces
  pre_kind pre = pre_kind::gpt2;
  bool ignore_merges = false;              // Llama 3: a word that is itself a token is emitted without merging
  std::vector<std::string> bytes;          // raw bytes of each token
  std::array<token_id, 256> byte_token{};  // token of each single byte (-1 if absent)
  merge_table merges;
  std::unordered_map<std::string, token_id, string_hash, std::equal_to<>> raw_to_id;  // raw bytes -> normal token
  std::vector<token_id> specials;  // matched with parse_special, longest first
  std::vector<token_id> user_defined;  // the user-defined ones among them, matched in plain text too
  std::vector<bool> eog;           // end-of-generation flags per token

  void encode_text(std::string_view text, std::vector<token_id>& out) const;
  void encode_spm(std::string_view text, bool space_prefix, std::vector<token_id>& out) const;
  void bpe_word(std::string_view word, bpe_scratch& scratch, std::vector<token_id>& out) const;
};

result<std::unique_ptr<tokenizer>> tokenizer::create(tokenizer_data d) {
  using E = error;
  if (d.model != "gpt2" && d.model != "llama") {
    return E{errc::unsupported, "tokenizer.ggml.model '" + d.model +
                                    "' is not supported (known: 'gpt2', byte-level BPE; 'llama', SentencePiece)"};
  }
  const bool spm = d.model == "llama";
  std::optional<pre_kind> pre = spm ? std::optional<pre_kind>(pre_kind::gpt2) : pre_kind_from_name(d.pre);
  if (!pre) {
    return E{errc::unsupported,
             "tokenizer.ggml.pre '" + d.pre +
                 "' is not supported (known: smollm, starcoder, llama-bpe, llama3, qwen2, gpt-2, default, ...)"};
  }
  const std::size_t n = d.tokens.size();
  if (n == 0 || n > 0x7FFFFFFF) return E{errc::bad_file, "tokenizer.ggml.tokens is empty or too large"};
  if (!d.token_types.empty() && d.token_types.size() != n) {
    return E{errc::bad_file, "tokenizer.ggml.token_type has " + std::to_string(d.token_types.size()) +
                                 " entries but tokenizer.ggml.tokens has " + std::to_string(n)};
  }
  for (int32_t* id : {&d.bos_id, &d.eos_id, &d.eot_id, &d.pad_id, &d.unk_id}) {
    if (*id < -1 || *id >= static_cast<int32_t>(n)) {
      return E{errc::bad_file, "tokenizer special token id " + std::to_string(*id) + " is out of range"};
    }
  }
  if (d.token_types.empty()) d.token_types.assign(n, type_normal);
  if (spm && d.scores.size() != n) {
    return E{errc::bad_file, "tokenizer.ggml.scores has " + std::to_string(d.scores.size()) +
                                 " entries but tokenizer.ggml.tokens has " + std::to_string(n) +
                                 " (a SentencePiece vocabulary needs one score per token)"};
  }

  auto p = std::make_unique<impl>();
  p->pre = *pre;
  p->spm = spm;
  if (d.pre == "llama-bpe" || d.pre == "llama3" || d.pre == "llama-v3") {
    p->ignore_merges = true;  // as llama.cpp does for the Llama 3 family (not for dbrx/smaug, same regex)
    d.add_bos = true;         // llama.cpp forces BOS for the Llama 3 family
  }

  // Byte-level decoding of each token's stored text.
  const std::array<char32_t, 256> byte_to_cpt = make_byte_to_cpt();
  std::unordered_map<char32_t, uint8_t> cpt_to_byte;
  for (int b = 0; b < 256; ++b) cpt_to_byte[byte_to_cpt[b]] = static_cast<uint8_t>(b);

  p->bytes.resize(n);
  std::unordered_map<std::string_view, token_id> text_to_id;
  text_to_id.reserve(n * 2);
  for (std::size_t i = 0; i < n; ++i) {
    const std::string& t = d.tokens[i];
    const int32_t type = d.token_types[i];
    text_to_id.emplace(t, static_cast<token_id>(i));
    std::string& raw = p->bytes[i];
    if (spm && (type == type_normal || type == type_undefined || type == type_user_defined)) {
      for (std::size_t pos = 0; pos < t.size();) {  // "▁" stands for a space
        if (std::string_view(t).substr(pos, spm_space.size()) == spm_space) {
          raw.push_back(' ');
          pos += spm_space.size();
        } else {
          raw.push_back(t[pos++]);
        }
      }
      p->piece_to_id.emplace(t, static_cast<token_id>(i));
    } else if (spm) {
      if (type == type_byte && t.size() == 6 && t.starts_with("<0x") && t.ends_with(">") && hex_digit(t[3]) >= 0 &&
          hex_digit(t[4]) >= 0) {
        raw.push_back(static_cast<char>(hex_digit(t[3]) * 16 + hex_digit(t[4])));
      } else {
        raw = t;
      }
      p->piece_to_id.emplace(t, static_cast<token_id>(i));
    } else if (type == type_normal || type == type_undefined) {
      std::size_t pos = 0;
      while (pos < t.size()) {
        char32_t cp = decode_utf8(t, pos);
        auto it = cpt_to_byte.find(cp);
        if (it != cpt_to_byte.end()) {
          raw.push_back(static_cast<char>(it->second));
        } else {
          append_utf8(raw, cp);  // not byte-level encoded: keep the character itself
        }
      }
    } else if (type == type_byte && t.size() == 6 && t.starts_with("<0x") && t.ends_with(">") && hex_digit(t[3]) >= 0 &&
               hex_digit(t[4]) >= 0) {
      raw.push_back(static_cast<char>(hex_digit(t[3]) * 16 + hex_digit(t[4])));
    } else {
      raw = t;  // control / user-defined / unknown / unused tokens are stored verbatim
    }
  }

  p->byte_token.fill(-1);
  for (int b = 0; b < 256; ++b) {
    std::string enc;
    if (spm) {  // the byte-fallback token <0xXX>, else the byte as a piece of its own
      static const char hex[] = "0123456789ABCDEF";
      enc = std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">";
      if (!text_to_id.count(enc)) enc = std::string(1, static_cast<char>(b));
    } else {
      append_utf8(enc, byte_to_cpt[b]);
    }
    auto it = text_to_id.find(enc);
    if (it != text_to_id.end()) p->byte_token[b] = it->second;
  }

  p->merges.build(d.merges.size());
  for (std::size_t rank = 0; rank < d.merges.size(); ++rank) {
    const std::string& m = d.merges[rank];
    std::size_t sp = m.find(' ', 1);
    if (sp == std::string::npos) {
      return E{errc::bad_file, "tokenizer.ggml.merges[" + std::to_string(rank) + "] has no space: '" + m + "'"};
    }
    std::string_view l(m.data(), sp), r(m.data() + sp + 1, m.size() - sp - 1);
    auto li = text_to_id.find(l), ri = text_to_id.find(r);
    auto res = text_to_id.find(std::string(l) + std::string(r));
    if (li == text_to_id.end() || ri == text_to_id.end() || res == text_to_id.end()) continue;  // unusable merge
    p->merges.insert(li->second, ri->second, static_cast<int32_t>(rank), res->second);
  }

  p->eog.assign(n, false);
  static const std::unordered_set<std::string_view> eog_texts = {
      "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|endoftext|>", "<|end|>", "<end_of_turn>"};
  for (std::size_t i = 0; i < n; ++i) {
    const int32_t type = d.token_types[i];
    if (type == type_control || type == type_user_defined || type == type_unknown) {
      p->specials.push_back(static_cast<token_id>(i));
      if (eog_texts.count(d.tokens[i])) p->eog[i] = true;
    }
    if (type == type_normal && p->ignore_merges) p->raw_to_id.emplace(p->bytes[i], static_cast<token_id>(i));
  }
  for (int32_t id : {d.eos_id, d.eot_id}) {
    if (id >= 0) p->eog[id] = true;
  }
  std::stable_sort(p->specials.begin(), p->specials.end(),
                   [&](token_id a, token_id b) { return d.tokens[a].size() > d.tokens[b].size(); });
  std::erase_if(p->specials, [&](token_id id) { return d.tokens[id].empty(); });
  for (token_id id : p->specials)
    if (d.token_types[id] == type_user_defined) p->user_defined.push_back(id);

  p->data = std::move(d);
  return std::unique_ptr<tokenizer>(new tokenizer(std::move(p)));
}

tokenizer::tokenizer(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
tokenizer::~tokenizer() = default;

void tokenizer::impl::bpe_word(std::string_view word, bpe_scratch& scratch, std::vector<token_id>& out) const {
  if (word.size() == 1) {
    token_id t = byte_token[static_cast<unsigned char>(word[0])];
    if (t >= 0) out.push_back(t);
    return;
  }
  if (ignore_merges) {
    auto it = raw_to_id.find(word);
    if (it != raw_to_id.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const auto n = static_cast<int32_t>(word.size());
  std::vector<bpe_symbol>& sym = scratch.sym;
  std::vector<bpe_candidate>& heap = scratch.heap;
  sym.resize(n);
  heap.clear();
  for (int32_t i = 0; i < n; ++i) {
    sym[i] = {byte_token[static_cast<unsigned char>(word[i])], i - 1, i + 1 < n ? i + 1 : -1};
  }
  auto consider = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0 || sym[l].id < 0 || sym[r].id < 0) return;
    if (const merge_table::entry* e = merges.find(sym[l].id, sym[r].id)) {
      heap.push_back({e->rank, l, r, sym[l].id, sym[r].id});
      std::push_heap(heap.begin(), heap.end(), std::greater<>{});
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i, i + 1);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>{});
    bpe_candidate c = heap.back();
    heap.pop_back();
    bpe_symbol& l = sym[c.left];
    if (l.id != c.left_id || l.next != c.right || sym[c.right].id != c.right_id) continue;  // stale
    l.id = merges.find(c.left_id, c.right_id)->result;
    bpe_symbol& r = sym[c.right];
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = c.left;
    r.id = -1;
    r.next = r.prev = -1;
    consider(l.prev, c.left);
    consider(c.left, l.next);
  }
  for (int32_t i = 0; i >= 0; i = sym[i].next) {
    if (sym[i].id >= 0) out.push_back(sym[i].id);
  }
}

// SentencePiece BPE over one fragment of raw text (llama.cpp's llm_tokenizer_spm): characters are merged
// pairwise, always the adjacent pair whose merged piece is a token with the highest score (leftmost on ties),
// until no pair merges; a symbol that is not a token becomes its bytes' <0xXX> tokens.
void tokenizer::impl::encode_spm(std::string_view raw, bool space_prefix, std::vector<token_id>& out) const {
  if (raw.empty()) return;  // (no "▁" for nothing)
  std::string text;
  text.reserve(raw.size() + 8);
  if (space_prefix) text.append(spm_space);
  for (char c : raw) {
    if (c == ' ') text.append(spm_space);
    else text.push_back(c);
  }
  if (text.empty()) return;
  std::vector<spm_symbol> sym;
  for (uint32_t pos = 0; pos < text.size();) {
    const auto lead = static_cast<unsigned char>(text[pos]);
    // The length its lead byte announces, by the top four bits as llama.cpp counts it (so 0xF8..0xFF take 4
    // bytes and a stray continuation byte 1): malformed text splits into the same symbols.
    static constexpr uint8_t len_by_top4[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    uint32_t len = len_by_top4[lead >> 4];
    len = std::min<uint32_t>(len, uint32_t(text.size()) - pos);
    const auto i = static_cast<int32_t>(sym.size());
    sym.push_back({pos, len, i - 1, -1});
    if (i > 0) sym[size_t(i) - 1].next = i;
    pos += len;
  }
  std::vector<spm_candidate> heap;
  const std::string_view tv(text);
  auto consider = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const std::string_view piece = tv.substr(sym[size_t(l)].begin, sym[size_t(l)].n + sym[size_t(r)].n);
    auto it = piece_to_id.find(piece);
    if (it == piece_to_id.end()) return;
    heap.push_back({data.scores[size_t(it->second)], l, r, uint32_t(piece.size())});
    std::push_heap(heap.begin(), heap.end());
  };
  for (int32_t i = 1; i < static_cast<int32_t>(sym.size()); ++i) consider(i - 1, i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    const spm_candidate c = heap.back();
    heap.pop_back();
    spm_symbol& l = sym[size_t(c.left)];
    spm_symbol& r = sym[size_t(c.right)];
    if (l.n == 0 || r.n == 0 || l.n + r.n != c.size) continue;  // stale
    l.n += r.n;
    r.n = 0;
    l.next = r.next;
    if (r.next >= 0) sym[size_t(r.next)].prev = c.left;
    consider(l.prev, c.left);
    consider(c.left, l.next);
  }
  for (int32_t i = 0; i >= 0; i = sym[size_t(i)].next) {
    const std::string_view piece = tv.substr(sym[size_t(i)].begin, sym[size_t(i)].n);
    auto it = piece_to_id.find(piece);
    if (it != piece_to_id.end()) {
      out.push_back(it->second);
      continue;
    }
    for (char b : piece) {  // byte fallback; a byte without a token becomes the unknown token (if any)
      const token_id t = byte_token[static_cast<unsigned char>(b)];
      if (t >= 0) out.push_back(t);
      else if (data.unk_id >= 0) out.push_back(data.unk_id);
    }
  }
}

void tokenizer::impl::encode_text(std::string_view text, std::vector<token_id>& out) const {
  // Decode leniently (malformed bytes become U+FFFD, as llama.cpp does) and keep the re-encoded text with
  // the byte offset of every code point, so words can be handed to BPE as byte ranges.
  std::vector<char32_t> cpts;
  std::vector<uint32_t> offsets;
  std::string norm;
  cpts.reserve(text.size());
  offsets.reserve(text.size() + 1);
  norm.reserve(text.size());
  for (std::size_t pos = 0; pos < text.size();) {
    char32_t cp = decode_utf8(text, pos);
    cpts.push_back(cp);
    offsets.push_back(static_cast<uint32_t>(norm.size()));
    append_utf8(norm, cp);
  }
  offsets.push_back(static_cast<uint32_t>(norm.size()));
  std::vector<word_span> words;
  words.reserve(cpts.size() / 3 + 1);
  split_words(pre, cpts, words);
  std::string_view nv(norm);
  bpe_scratch scratch;
  for (const word_span& w : words) {
    bpe_word(nv.substr(offsets[w.begin], offsets[w.end] - offsets[w.begin]), scratch, out);
  }
}

std::vector<token_id> tokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
  const impl& p = *impl_;
  std::vector<token_id> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos && p.data.bos_id >= 0) out.push_back(p.data.bos_id);
  // Split the text around special tokens, longest token first over the whole text (llama.cpp's order), so
  // a longer special token wins over a shorter one it contains. Without parse_special only user-defined
  // tokens are split out (as llama.cpp does: Gemma's whitespace runs and HTML tags are such pieces), never
  // control or unknown ones.
  struct fragment {
    token_id special;  // -1 for raw text
    std::size_t begin, end;
  };
  std::vector<fragment> frags{{-1, 0, text.size()}}, next;
  for (token_id sid : parse_special ? p.specials : p.user_defined) {
    const std::string& st = p.data.tokens[sid];
    if (text.find(st) == std::string_view::npos) continue;
    next.clear();
    for (const fragment& f : frags) {
      if (f.special >= 0) {
        next.push_back(f);
        continue;
      }
      std::size_t pos = f.begin;
      while (pos < f.end) {
        std::size_t m = text.substr(0, f.end).find(st, pos);
        if (m == std::string_view::npos) break;
        if (m > pos) next.push_back({-1, pos, m});
        next.push_back({sid, m, m + st.size()});
        pos = m + st.size();
      }
      if (pos < f.end) next.push_back({-1, pos, f.end});
    }
    frags.swap(next);
  }
  bool after_special = true;  // SentencePiece: a text fragment at the start or after a special token gets "▁"
  for (const fragment& f : frags) {
    if (f.special >= 0) {
      out.push_back(f.special);
      after_special = true;
    } else if (p.spm) {
      p.encode_spm(text.substr(f.begin, f.end - f.begin), p.data.add_space_prefix && after_special, out);
      after_special = false;
    } else {
      p.encode_text(text.substr(f.begin, f.end - f.begin), out);
    }
  }
  return out;
}

const std::string& tokenizer::token_bytes(token_id id) const {
  if (id < 0 || id >= n_vocab()) return empty_string;
  return impl_->bytes[id];
}

std::string tokenizer::decode(std::span<const token_id> ids) const {
  std::string out;
  for (token_id id : ids) out += token_bytes(id);
  return out;
}

bool tokenizer::is_end_of_generation(token_id id) const { return id >= 0 && id < n_vocab() && impl_->eog[id]; }

bool tokenizer::is_control(token_id id) const {
  return id >= 0 && id < n_vocab() && impl_->data.token_types[id] == type_control;
}

int32_t tokenizer::n_vocab() const { return static_cast<int32_t>(impl_->bytes.size()); }
token_id tokenizer::bos() const { return impl_->data.bos_id; }
const tokenizer_data& tokenizer::data() const { return impl_->data; }

}  // namespace sluice::engine
