// The engine's one public header: load a GGUF model, tokenize, apply its chat template, generate with
// sampling while streaming tokens with log-probs, cancel, report stats. The engine owns its compute threads
// and a scheduler that decodes all active sequences together (continuous batching).
// What must not go in here: HTTP, JSON, YAML, policy or router types; kernel or tensor internals.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/system/result.hpp>

namespace sluice::engine {

enum class errc {
  io,                // the file could not be opened or mapped
  bad_file,          // malformed, truncated or hostile GGUF
  unsupported,       // valid GGUF the engine does not support (architecture, tensor type, template)
  invalid_argument,  // bad sampling parameters, empty prompt, ...
  context_overflow,  // prompt + max_tokens does not fit the context
  overloaded,        // too many queued sequences, or shutting down
};

struct error {
  errc code = errc::bad_file;
  std::string message;  // names the offending key/tensor/offset
};

template <class T>
using result = boost::system::result<T, error>;

[[noreturn]] void throw_exception_from_error(const error& e, const boost::source_location& loc);

using token_id = int32_t;

struct load_options {
  std::string path;
  int threads = 0;            // compute threads; 0 = one per core
  int context_tokens = 2048;  // per-sequence context (capped at the model's trained context)
  int max_sequences = 8;      // sequences decoded together
  std::string chat_template;  // "" = detect from tokenizer.chat_template; else "chatml", "llama3" or "gemma"
  // The KV cache: one pool of fixed-size blocks shared by running sequences and the prefix cache (blocks of
  // finished and running sequences that later prompts starting with the same tokens read instead of
  // recomputing). Allocated at load (address space; pages are touched as they fill).
  size_t kv_cache_bytes = 256u << 20;
  bool prefix_cache = true;   // false: every prompt is computed in full
  // Tokens per step while streams are decoding (their tokens included): a long prompt is prefilled in
  // chunks of about this size between decode steps, which bounds the gap between a stream's tokens.
  int step_token_budget = 32;
  // Where the model runs: "cpu", "cuda" (an NVIDIA GPU; an error when this build or machine has none) or
  // "auto" (the GPU when there is one, else the CPU, saying why in model_info::device_note).
  std::string device = "cpu";
};

struct model_info {
  std::string architecture;  // "llama", "qwen2", "qwen3" or "gemma3"
  std::string name;          // general.name
  std::string chat_template; // the template in use: "chatml", "llama3" or "gemma"
  int n_vocab = 0, n_ctx_train = 0, n_embd = 0, n_layer = 0, n_head = 0, n_head_kv = 0, n_ff = 0;
  int context_tokens = 0;  // what this engine allocates per sequence
  bool add_bos = false;    // the model expects BOS before a raw (non-chat) prompt: tokenize(text, add_bos)
  uint64_t n_params = 0;
  uint64_t file_bytes = 0;
  std::string device = "cpu";  // the backend in use: "cpu" or "cuda"
  std::string device_note;     // why "auto" chose what it chose ("" otherwise)
};

struct chat_message {
  std::string role;  // "system", "user", "assistant", "tool" (developer is mapped to system by callers)
  std::string content;
};

struct sampling_params {
  float temperature = 1.0f;  // 0 = greedy
  int top_k = 0;             // 0 = off
  float top_p = 1.0f;        // 1 = off
  float min_p = 0.0f;        // 0 = off
  float frequency_penalty = 0.0f;  // OpenAI semantics: -= count * frequency_penalty
  float presence_penalty = 0.0f;   // OpenAI semantics: -= (count > 0) * presence_penalty
  std::optional<uint64_t> seed;    // same seed + same prompt + same params -> same output
  int max_tokens = 256;            // generated tokens at most
  std::vector<std::string> stop;   // stop sequences, matched on decoded text across token boundaries
  int top_logprobs = 0;            // alternatives to report per token (0..20)
  bool logprobs = false;           // report per-token log-probs
};

enum class finish_reason { stop, length, cancelled, error };

struct token_event {
  token_id token = 0;
  // Text that became final with this token: valid UTF-8, never split inside a character, and with any
  // text that might be the start of a stop sequence held back until it is known not to be.
  std::string text;
  float logprob = 0.0f;  // natural log-prob of the sampled token under the unmodified distribution
  std::vector<std::pair<std::string, float>> top;  // top alternatives (token text, logprob), best first
  std::string token_text;  // this token's own bytes (may be a partial UTF-8 character)
};

struct finish_info {
  finish_reason reason = finish_reason::stop;
  std::string message;  // for finish_reason::error
  int tokens_prompt = 0;
  int tokens_cached = 0;  // prompt tokens served from the prefix cache (not recomputed)
  int tokens_generated = 0;
  double prefill_ms = 0.0;
  double decode_ms = 0.0;
};

// Receives a sequence's output. Called on an engine thread: must return quickly and never block.
// on_token calls come in order; on_finish is called exactly once, last (also after cancel()).
class sequence_observer {
 public:
  virtual ~sequence_observer() = default;
  virtual void on_token(const token_event& ev) = 0;
  virtual void on_finish(const finish_info& info) = 0;
};

using sequence_id = uint64_t;

struct stats {
  int sequences_active = 0;
  int sequences_queued = 0;
  uint64_t tokens_prefilled = 0;
  uint64_t tokens_decoded = 0;
  uint64_t tokens_prefix_cached = 0;  // prompt tokens read from the prefix cache instead of computed
  double kv_cache_used_fraction = 0.0;  // kv_blocks_used / kv_blocks_total
  int kv_block_tokens = 0;              // positions per block
  int kv_blocks_total = 0;              // the pool
  int kv_blocks_used = 0;               // held by sequences or the prefix cache
  int kv_blocks_cached = 0;             // held by the prefix cache (some also read by running sequences)
  uint64_t kv_blocks_evicted = 0;       // prefix-cache blocks freed for new sequences, since load
};

class engine {
 public:
  static result<std::unique_ptr<engine>> load(const load_options& opts);
  ~engine();  // cancels everything still running and joins the compute threads
  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  const model_info& info() const;

  // Plain text never yields special tokens unless parse_special is set.
  std::vector<token_id> tokenize(std::string_view text, bool add_bos = false, bool parse_special = false) const;
  std::string detokenize(std::span<const token_id> tokens) const;

  // Renders messages with the model's chat template (ending with the assistant prompt when asked).
  result<std::string> apply_chat_template(std::span<const chat_message> messages,
                                          bool add_generation_prompt = true) const;

  // Renders messages with the chat template and tokenizes the result so that the template's markers become
  // special tokens while message contents are tokenized as plain text (a user cannot inject <|im_start|>).
  result<std::vector<token_id>> tokenize_chat(std::span<const chat_message> messages,
                                              bool add_generation_prompt = true) const;

  // Queues a sequence; thread-safe. The observer is kept alive until on_finish has returned.
  result<sequence_id> submit(std::vector<token_id> prompt, const sampling_params& params,
                             std::shared_ptr<sequence_observer> observer);
  // Thread-safe and idempotent; unknown or finished ids are ignored.
  void cancel(sequence_id id);

  stats get_stats() const;

  struct impl;

 private:
  explicit engine(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

}  // namespace sluice::engine
