// See upstream_anthropic.h: the Messages protocol plugged into the shared transport (upstream_protocol.h).
#include "upstream/upstream_anthropic.h"

#include "api/anthropic_codec.h"
#include "upstream/upstream_protocol.h"

namespace sluice::gateway {

namespace {

class anthropic_decoder final : public upstream_stream_decoder {
 public:
  explicit anthropic_decoder(std::string model_name) : inner_(std::move(model_name)) {}
  step on_event(std::string_view data, router::chunk& out, router::completion& acc, router::error& err,
                bool& malformed) override {
    const auto s = inner_.on_event(data, out, acc, err);
    malformed = inner_.malformed();
    switch (s) {
      case anthropic_stream_decoder::step::none: return step::none;
      case anthropic_stream_decoder::step::chunk: return step::chunk;
      case anthropic_stream_decoder::step::done: return step::done;
      case anthropic_stream_decoder::step::failed: return step::failed;
    }
    return step::failed;
  }

 private:
  anthropic_stream_decoder inner_;
};

class anthropic_protocol final : public upstream_protocol {
 public:
  std::string_view path() const override { return "/messages"; }

  std::string auth_headers(const std::string& api_key) const override {
    std::string h = "anthropic-version: " + std::string(anthropic_api_version) + "\r\n";
    if (!api_key.empty()) h += "x-api-key: " + api_key + "\r\n";
    return h;
  }

  router::result<std::string> request_body(const router::chat_request& req,
                                           const policies::model_config& model) const override {
    anthropic_upstream_options o;
    if (model.cache_system_prompt) o.cache_system_min_chars = policies::anthropic_cache_min_chars;
    return make_anthropic_upstream_body(req, model.upstream_model.empty() ? model.name : model.upstream_model, o);
  }

  bool parse_answer(std::string_view body, router::completion& out) const override {
    return parse_anthropic_message_response(body, out);
  }

  std::unique_ptr<upstream_stream_decoder> stream_decoder(const policies::model_config& model) const override {
    return std::make_unique<anthropic_decoder>(model.name);
  }
};

}  // namespace

router::result<std::shared_ptr<router::backend>> make_anthropic_backend(io_threads& threads,
                                                                        const policies::model_config& model,
                                                                        const upstream_options& opts) {
  return make_upstream_backend(threads, model, opts, std::make_shared<anthropic_protocol>());
}

}  // namespace sluice::gateway
