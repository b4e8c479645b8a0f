// The `routes` and `decision_log` sections of a policy (see docs/policy.md). Split from policy_loader.cpp,
// which owns the top level, `server` and `models`. What must not go in here: loading the model files a route
// names (the router does that at serve and validate time).
#pragma once

#include <filesystem>
#include <vector>

#include "sluice/policies/policy.h"
#include "yaml_fields.h"

namespace sluice::policies::detail {

struct loaded_route {
  route_config route;
  YAML::Mark mark;  // the route's key, for errors found once every section is read
};

void load_routes(error_sink& sink, const field& section, const std::filesystem::path& base_dir,
                 std::vector<loaded_route>& out);
void load_decision_log(error_sink& sink, const field& section, const std::filesystem::path& base_dir,
                       decision_log_config& out);

// Checks routes against the models (tiers exist, names do not clash) and fills defaults that depend on them.
void check_routes(error_sink& sink, const std::vector<model_config>& models, std::vector<loaded_route>& routes);

}  // namespace sluice::policies::detail
