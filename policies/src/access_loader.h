// The callers' sections of a policy: `keys`, `teams`, `keys_file` and `limits_state` (see docs/policy.md,
// "Keys, budgets and rate limits"). Split from policy_loader.cpp, which owns the top level. What must not go
// in here: secrets (only SHA-256 hashes are read), counting (the gateway's access/ does that).
#pragma once

#include <filesystem>
#include <vector>

#include "sluice/policies/policy.h"
#include "yaml_fields.h"

namespace sluice::policies::detail {

void load_keys(error_sink& sink, const field& section, std::vector<key_config>& out);
void load_teams(error_sink& sink, const field& section, std::vector<team_config>& out);
void load_limits_state(error_sink& sink, const field& section, limits_state_config& out);

// `keys_file: path`: reads the `keys` and `teams` of that YAML file into `p` (errors name that file, and are
// appended to the policy's).
void load_keys_file(error_sink& sink, const field& f, const std::filesystem::path& base_dir, policy& p);

// Checks keys against the rest of the policy once every section is read: teams exist, allowed names are
// routes or models, no two keys share a hash, limits_state is not set without keys.
void check_access(error_sink& sink, const YAML::Node& root, policy& p);

}  // namespace sluice::policies::detail
