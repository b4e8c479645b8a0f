// GGUF -> llama_model + tokenizer_data (tokenizer.ggml.* keys as llama.cpp's converter writes them).
#include "model_loader.h"

namespace sluice::engine {
namespace {

result<void> fill_tokenizer(const gguf_file& f, tokenizer_data& d) {
#define SLUICE_TRY(var, expr) \
  auto var = (expr);          \
  if (!var) return var.error();
  SLUICE_TRY(model, f.get_string("tokenizer.ggml.model"))
  if (!*model) return error{errc::bad_file, "missing metadata 'tokenizer.ggml.model'"};
  d.model = **model;
  SLUICE_TRY(pre, f.get_string("tokenizer.ggml.pre"))
  d.pre = pre->value_or("");
  SLUICE_TRY(tokens, f.get_string_array("tokenizer.ggml.tokens"))
  if (!*tokens) return error{errc::bad_file, "missing metadata 'tokenizer.ggml.tokens'"};
  d.tokens = std::move(**tokens);
  SLUICE_TRY(types, f.get_int_array("tokenizer.ggml.token_type"))
  if (*types) d.token_types = std::move(**types);
  SLUICE_TRY(merges, f.get_string_array("tokenizer.ggml.merges"))
  if (*merges) d.merges = std::move(**merges);
  SLUICE_TRY(scores, f.get_float_array("tokenizer.ggml.scores"))
  if (*scores) d.scores = std::move(**scores);
  SLUICE_TRY(space_prefix, f.get_bool("tokenizer.ggml.add_space_prefix"))
  d.add_space_prefix = space_prefix->value_or(true);
  struct { int32_t* out; const char* key; } ids[] = {
      {&d.bos_id, "tokenizer.ggml.bos_token_id"}, {&d.eos_id, "tokenizer.ggml.eos_token_id"},
      {&d.eot_id, "tokenizer.ggml.eot_token_id"}, {&d.pad_id, "tokenizer.ggml.padding_token_id"},
      {&d.unk_id, "tokenizer.ggml.unknown_token_id"},
  };
  for (auto& id : ids) {
    SLUICE_TRY(v, f.get_uint(id.key))
    if (*v) {
      if (**v >= d.tokens.size())
        return error{errc::bad_file, std::string("metadata '") + id.key + "' = " + std::to_string(**v) +
                                         " is not a token id"};
      *id.out = int32_t(**v);
    }
  }
  SLUICE_TRY(add_bos, f.get_bool("tokenizer.ggml.add_bos_token"))
  d.add_bos = add_bos->value_or(false);
  SLUICE_TRY(tmpl, f.get_string("tokenizer.chat_template"))
  d.chat_template = tmpl->value_or("");
#undef SLUICE_TRY
  return {};
}

}  // namespace

result<loaded_model> load_model_file(const std::string& path) {
  auto file = mapped_file::open(path);
  if (!file) return file.error();
  auto g = gguf_file::parse(std::move(*file));
  if (!g) {
    auto e = g.error();
    e.message = path + ": " + e.message;
    return e;
  }
  auto named = [&](error e) {  // every message names the file
    e.message = path + ": " + e.message;
    return e;
  };
  loaded_model out;
  if (auto r = fill_tokenizer(**g, out.tok); !r) return named(r.error());
  auto m = load_llama_model(std::move(*g));
  if (!m) return named(m.error());
  if (out.tok.tokens.size() != size_t((*m)->hp.n_vocab))
    return named(error{errc::bad_file, "tokenizer.ggml.tokens has " + std::to_string(out.tok.tokens.size()) +
                                     " entries but the model has " + std::to_string((*m)->hp.n_vocab) + " rows"});
  out.model = std::move(*m);
  return out;
}

}  // namespace sluice::engine
