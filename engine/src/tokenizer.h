// Tokenizer built from a GGUF file's tokenizer.ggml.* metadata: byte-level BPE (model "gpt2", as used by
// SmolLM2, Qwen and Llama 3: pre-tokenizer split, merges by rank) or SentencePiece BPE (model "llama", as used
// by Llama 2, TinyLlama, Mistral and Gemma: "▁" for spaces, merges by score, byte fallback); special-token
// matching and detokenization for both.
// What must not go in here: GGUF parsing (the reader fills tokenizer_data), chat templates, sampling.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/engine/engine.h"

namespace sluice::engine {

struct tokenizer_data {              // filled by the GGUF reader from tokenizer.ggml.* metadata
  std::string model;                 // tokenizer.ggml.model: "gpt2" (byte-level BPE) or "llama" (SentencePiece)
  std::string pre;                   // tokenizer.ggml.pre, e.g. "smollm", "llama-bpe" ("" = default)
  std::vector<std::string> tokens;   // tokenizer.ggml.tokens
  std::vector<int32_t> token_types;  // tokenizer.ggml.token_type (may be empty)
  std::vector<std::string> merges;   // tokenizer.ggml.merges ("a b")
  std::vector<float> scores;         // tokenizer.ggml.scores (SentencePiece, model "llama": merge priority)
  bool add_space_prefix = true;      // tokenizer.ggml.add_space_prefix (SentencePiece: "▁" before the text)
  int32_t bos_id = -1, eos_id = -1, eot_id = -1, pad_id = -1, unk_id = -1;  // -1 = absent
  bool add_bos = false;                                                     // tokenizer.ggml.add_bos_token
  std::string chat_template;  // tokenizer.chat_template (jinja text, may be empty)
};

class tokenizer {  // immutable after construction; thread-safe
 public:
  static result<std::unique_ptr<tokenizer>> create(tokenizer_data d);
  ~tokenizer();
  tokenizer(const tokenizer&) = delete;
  tokenizer& operator=(const tokenizer&) = delete;

  // Plain text never yields unknown or control tokens (token_type 2/3) unless parse_special is set; then they
  // are matched first, longest first. User-defined tokens (type 4) are matched in any text, as llama.cpp
  // does. add_bos prepends bos() if it exists.
  std::vector<token_id> encode(std::string_view text, bool add_bos, bool parse_special) const;
  // Raw bytes of a token (byte-level decoded; may be a partial UTF-8 character). Out of range -> "".
  const std::string& token_bytes(token_id id) const;
  std::string decode(std::span<const token_id> ids) const;
  bool is_end_of_generation(token_id id) const;  // eos / eot / <|im_end|> / <|eot_id|> ...
  bool is_control(token_id id) const;            // token_type 3 (<|im_start|>, ...): not part of output text
  int32_t n_vocab() const;
  token_id bos() const;  // -1 when the vocabulary has none
  // The metadata it was built from (tokens as stored in the GGUF). add_bos is the effective default: true
  // for the Llama 3 pre-tokenizer family even when the file omits it (as llama.cpp does).
  const tokenizer_data& data() const;

  struct impl;

 private:
  explicit tokenizer(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

}  // namespace sluice::engine
