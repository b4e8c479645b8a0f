// See task_backend.h.
#include "local/task_backend.h"

#include <algorithm>
#include <cmath>

#include "sluice/router/task_model.h"

namespace sluice::gateway {

namespace {

// Answers synchronously inside start(): nothing is left to cancel.
class done_generation final : public router::generation {
 public:
  void cancel() override {}
};

class task_backend final : public router::backend {
 public:
  explicit task_backend(router::task_classifier clf) : clf_(std::move(clf)) {}

  router::result<std::shared_ptr<router::generation>> start(std::shared_ptr<const router::chat_request> req,
                                                            const policies::model_config& model,
                                                            std::shared_ptr<router::generation_sink> sink) override {
    const router::task_classifier::answer a = clf_.classify(*req);
    router::completion c;
    c.text = clf_.model().labels[a.label];
    c.finish = router::finish_reason::stop;
    c.model = model.name;
    c.confidence = a.confidence;
    c.confidence_threshold = clf_.model().threshold;
    // No tokenizer here: input tokens are estimated at 4 bytes each (prices of a task tier are usually per
    // request, `cost_per_request`); the answer is one label.
    size_t bytes = req->format == router::wire_format::openai_completions ? req->prompt.size() : 0;
    if (req->format != router::wire_format::openai_completions) {
      for (const router::message& m : req->messages) bytes += m.content.size();
    }
    c.usage_.tokens_input = static_cast<int64_t>((bytes + 3) / 4);
    c.usage_.tokens_output = 1;
    if (req->logprobs) {
      router::token_logprob lp;
      lp.token = c.text;
      lp.logprob = std::log(std::max(a.confidence, 1e-300));
      c.logprobs.push_back(lp);
    }
    router::chunk text;
    text.text = c.text;
    text.logprobs = c.logprobs;
    sink->on_chunk(std::move(text));
    router::chunk last;
    last.finish = c.finish;
    last.usage_ = c.usage_;
    sink->on_chunk(std::move(last));
    sink->on_done(std::move(c));
    return std::shared_ptr<router::generation>(std::make_shared<done_generation>());
  }

 private:
  router::task_classifier clf_;
};

}  // namespace

router::result<std::shared_ptr<router::backend>> make_task_backend(const policies::model_config& model) {
  auto clf = router::task_classifier::load(model.task_model_path);
  if (!clf) return clf.error();
  return std::shared_ptr<router::backend>(std::make_shared<task_backend>(std::move(*clf)));
}

}  // namespace sluice::gateway
