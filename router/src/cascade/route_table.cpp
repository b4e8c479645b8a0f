// See route_table.h.
#include "route_table.h"

namespace sluice::router::detail {

result<std::shared_ptr<const compiled_route>> compile_route(
    const policies::policy& policy, const policies::route_config& route,
    const std::unordered_map<std::string, std::shared_ptr<backend>>* backends) {
  auto fail = [&](const std::string& what) {
    return error{errc::internal, policy.source + ":" + std::to_string(route.line) + ": route '" + route.name + "': " + what};
  };
  auto r = std::make_shared<compiled_route>();
  r->config = &route;
  for (const std::string& name : route.tiers) {
    const policies::model_config* m = policy.find_model(name);
    if (!m) return fail("tier '" + name + "' is not a model of the policy");
    r->tiers.push_back(m);
    if (backends) {
      auto it = backends->find(name);
      if (it == backends->end() || !it->second) return fail("tier '" + name + "' has no backend in this build");
      r->backends.push_back(it->second);
    }
    auto& alternatives = r->fallbacks.emplace_back();
    for (const std::string& f : m->fallbacks) {
      const policies::model_config* fm = policy.find_model(f);
      if (!fm) return fail("tier '" + name + "': fallback '" + f + "' is not a model of the policy");
      if (!backends) {
        alternatives.push_back({fm, nullptr});
        continue;
      }
      auto it = backends->find(f);
      if (it != backends->end() && it->second) alternatives.push_back({fm, it->second});
    }
  }
  if (r->tiers.empty()) return fail("no tiers");
  r->baseline = policy.find_model(route.baseline.empty() ? route.tiers.back() : route.baseline);
  if (!r->baseline) return fail("baseline '" + route.baseline + "' is not a model of the policy");

  if (!route.pre_score.classifier_path.empty()) {
    auto c = classifier::load(route.pre_score.classifier_path);
    if (!c) return fail("pre_score classifier: " + c.error().message);
    r->pre_classifier = std::make_shared<const classifier>(std::move(*c));
  }

  const policies::accept_config& acc = route.accept;
  r->scored_tier = r->tiers.size();
  for (size_t i = 0; i + 1 < r->tiers.size(); ++i) {
    if (r->tiers[i]->kind == policies::model_kind::local) {
      r->scored_tier = i;
      break;
    }
  }
  const bool has_rule = !acc.model_path.empty() || acc.min_mean_logprob.has_value();
  if (has_rule && r->scored_tier == r->tiers.size()) {
    return fail("'accept.model' and 'accept.min_mean_logprob' judge a local tier's answer by its log-probs; the "
                "route has no local tier before its last");
  }
  r->labels.labels.clear();
  for (const std::string& l : acc.labels) r->labels.labels.push_back(normalise_answer(l));
  if (!acc.model_path.empty()) {
    auto s = acceptance_scorer::load(acc.model_path);
    if (!s) return fail("acceptance model: " + s.error().message);
    const acceptance_model& am = s->model();
    if (!r->labels.labels.empty() && !am.config.labels.empty() && r->labels.labels != am.config.labels) {
      std::string a, b;
      for (auto& l : r->labels.labels) a += (a.empty() ? "" : ", ") + l;
      for (auto& l : am.config.labels) b += (b.empty() ? "" : ", ") + l;
      return fail("accept.labels [" + a + "] differ from the labels the acceptance model was trained with [" + b + "]");
    }
    if (r->labels.labels.empty()) r->labels.labels = am.config.labels;
    r->threshold = acc.threshold.value_or(am.threshold);
    r->top_logprobs = static_cast<int>(am.config.top_logprobs);
    r->wants_logprobs = true;
    // The model judges answers of one local model: refuse it in front of another.
    if (!r->backends.empty()) {
      const policies::model_config& tier = *r->tiers[r->scored_tier];
      if (auto ok = s->check_local_model(r->backends[r->scored_tier]->identity()); !ok) {
        return fail("the acceptance model " + acc.model_path + ": " + ok.error().message + " (tier '" + tier.name +
                    "', " + tier.local.gguf_path + ")");
      }
    }
    r->scorer = std::make_shared<const acceptance_scorer>(std::move(*s));
  }
  if (acc.min_mean_logprob) r->wants_logprobs = true;
  if (!acc.regex.empty()) {
    try {
      r->regex.emplace(acc.regex, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      return fail(std::string("accept.regex: ") + e.what());
    }
  }
  if (!route.shadow.tier.empty()) {
    r->shadow_model = policy.find_model(route.shadow.tier);
    if (!r->shadow_model) return fail("shadow tier '" + route.shadow.tier + "' is not a model of the policy");
    if (backends) {
      auto it = backends->find(route.shadow.tier);
      if (it == backends->end() || !it->second) return fail("shadow tier '" + route.shadow.tier + "' has no backend");
      r->shadow_backend = it->second;
    }
  }
  return std::shared_ptr<const compiled_route>(std::move(r));
}

}  // namespace sluice::router::detail
