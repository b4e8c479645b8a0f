// The public engine API (sluice/engine/engine.h): load = map the GGUF, build the model, tokenizer, chat
// template and CPU backend, start the scheduler. Everything else forwards to those pieces.
#include "sluice/engine/engine.h"

#include <algorithm>
#include <new>
#include <string>
#include <thread>

#include "backend.h"
#include "chat_template.h"
#include "cuda/cuda_backend.h"
#include "cuda/cuda_plan.h"
#include "model_loader.h"
#include "scheduler.h"
#include "tokenizer.h"

namespace sluice::engine {

[[noreturn]] void throw_exception_from_error(const error& e, const boost::source_location&) {
  throw std::runtime_error(e.message);
}

struct engine::impl {
  model_info info;
  std::unique_ptr<llama_model> model;
  std::unique_ptr<tokenizer> tok;
  chat_format format;
  std::unique_ptr<backend> be;
  std::unique_ptr<scheduler> sched;  // declared last: stopped first
};

engine::engine(std::unique_ptr<impl> p) : impl_(std::move(p)) {}

engine::~engine() {
  if (impl_) impl_->sched.reset();
}

result<std::unique_ptr<engine>> engine::load(const load_options& opts) {
  if (opts.threads < 0 || opts.threads > 256) return error{errc::invalid_argument, "threads must be in 0..256"};
  if (opts.context_tokens < 1) return error{errc::invalid_argument, "context_tokens must be >= 1"};
  if (opts.max_sequences < 1 || opts.max_sequences > 1024)
    return error{errc::invalid_argument, "max_sequences must be in 1..1024"};
  if (opts.step_token_budget < 1 || opts.step_token_budget > 65536)
    return error{errc::invalid_argument, "step_token_budget must be in 1..65536"};
  auto lm = load_model_file(opts.path);
  if (!lm) return lm.error();
  auto p = std::make_unique<impl>();
  auto named = [&](error e) {  // (the loader's own errors already name the file)
    e.message = opts.path + ": " + e.message;
    return e;
  };
  auto tok = tokenizer::create(std::move(lm->tok));
  if (!tok) return named(tok.error());
  p->tok = std::move(*tok);
  auto fmt = detect_chat_template(p->tok->data().chat_template, opts.chat_template, lm->model->arch);
  if (!fmt) return named(fmt.error());
  p->format = *fmt;
  p->model = std::move(lm->model);
  const llama_hparams& hp = p->model->hp;
  model_info& mi = p->info;
  mi.architecture = p->model->arch;
  mi.name = p->model->name;
  mi.chat_template = std::string(template_name(p->format.kind));
  mi.n_vocab = hp.n_vocab;
  mi.n_ctx_train = hp.n_ctx_train;
  mi.n_embd = hp.n_embd;
  mi.n_layer = hp.n_layer;
  mi.n_head = hp.n_head;
  mi.n_head_kv = hp.n_head_kv;
  mi.n_ff = hp.n_ff;
  mi.context_tokens = std::min(opts.context_tokens, hp.n_ctx_train);
  mi.n_params = p->model->n_params;
  mi.file_bytes = p->model->file->file_bytes();
  mi.add_bos = p->tok->data().add_bos;
  int threads = opts.threads > 0 ? opts.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  const cuda::device_choice dev =
      cuda::choose_device(opts.device, opts.device == "cpu" ? std::string() : cuda::why_not_available());
  if (!dev.error.empty()) return error{errc::invalid_argument, dev.error};
  mi.device_note = dev.note;
  if (dev.use_cuda) {
    try {
      p->be = cuda::make_backend(*p->model);
      mi.device = "cuda";
    } catch (const std::exception& e) {
      return named(error{errc::invalid_argument, std::string("the CUDA backend could not start: ") + e.what()});
    }
  } else {
    p->be = make_cpu_backend(*p->model, threads, kv_type::f16);
  }
  scheduler_options so;
  so.max_sequences = opts.max_sequences;
  so.context_tokens = mi.context_tokens;
  so.kv_cache_bytes = opts.kv_cache_bytes;
  so.prefix_cache = opts.prefix_cache;
  so.step_token_budget = opts.step_token_budget;
  if (opts.kv_cache_bytes < p->be->kv_block_bytes())
    return error{errc::invalid_argument, "kv_cache_bytes (" + std::to_string(opts.kv_cache_bytes) +
                                             ") holds no KV block; one block of this model takes " +
                                             std::to_string(p->be->kv_block_bytes()) + " bytes"};
  try {
    p->sched = std::make_unique<scheduler>(*p->be, *p->tok, so);
  } catch (const std::bad_alloc&) {
    return error{errc::invalid_argument,
                 "out of memory for a KV cache of " + std::to_string(opts.kv_cache_bytes >> 20) + " MiB"};
  }
  return std::unique_ptr<engine>(new engine(std::move(p)));
}

const model_info& engine::info() const { return impl_->info; }

std::vector<token_id> engine::tokenize(std::string_view text, bool add_bos, bool parse_special) const {
  return impl_->tok->encode(text, add_bos, parse_special);
}

std::string engine::detokenize(std::span<const token_id> tokens) const { return impl_->tok->decode(tokens); }

result<std::string> engine::apply_chat_template(std::span<const chat_message> messages,
                                                bool add_generation_prompt) const {
  for (auto& m : messages)
    if (m.role != "system" && m.role != "user" && m.role != "assistant" && m.role != "tool")
      return error{errc::invalid_argument, "unknown chat role '" + m.role + "'"};
  token_id bos = impl_->tok->bos();
  std::string bos_text = bos >= 0 ? impl_->tok->data().tokens[size_t(bos)] : std::string();
  return render_chat(impl_->format, messages, add_generation_prompt, bos_text);
}

result<sequence_id> engine::submit(std::vector<token_id> prompt, const sampling_params& params,
                                   std::shared_ptr<sequence_observer> observer) {
  return impl_->sched->submit(std::move(prompt), params, std::move(observer));
}

void engine::cancel(sequence_id id) { impl_->sched->cancel(id); }

stats engine::get_stats() const { return impl_->sched->get_stats(); }

}  // namespace sluice::engine
