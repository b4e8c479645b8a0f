// Test helper: loads the tokenizer metadata dumps and golden token ids in test/engine/golden/ (written by
// make_token_golden.py through llama.cpp). What must not go in here: assertions (tests make those).
#pragma once

#include <boost/json.hpp>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tokenizer.h"

namespace sluice::engine::test {

inline std::string golden_path(const std::string& name) {
  return std::string(SLUICE_SOURCE_DIR) + "/test/engine/golden/" + name;
}

inline boost::json::value read_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return boost::json::parse(ss.str());
}

inline tokenizer_data load_tokenizer_data(const std::string& name) {
  boost::json::object o = read_json(golden_path(name)).as_object();
  tokenizer_data d;
  d.model = o.at("model").as_string().c_str();
  d.pre = o.at("pre").as_string().c_str();
  for (const auto& t : o.at("tokens").as_array()) d.tokens.emplace_back(t.as_string().c_str(), t.as_string().size());
  for (const auto& t : o.at("token_types").as_array()) d.token_types.push_back(static_cast<int32_t>(t.as_int64()));
  for (const auto& m : o.at("merges").as_array()) d.merges.emplace_back(m.as_string().c_str(), m.as_string().size());
  d.bos_id = static_cast<int32_t>(o.at("bos_id").as_int64());
  d.eos_id = static_cast<int32_t>(o.at("eos_id").as_int64());
  d.eot_id = static_cast<int32_t>(o.at("eot_id").as_int64());
  d.pad_id = static_cast<int32_t>(o.at("pad_id").as_int64());
  d.unk_id = static_cast<int32_t>(o.at("unk_id").as_int64());
  d.add_bos = o.at("add_bos").as_bool();
  if (const auto* s = o.if_contains("scores")) {
    for (const auto& v : s->as_array()) d.scores.push_back(static_cast<float>(v.to_number<double>()));
  }
  if (const auto* a = o.if_contains("add_space_prefix")) d.add_space_prefix = a->as_bool();
  const auto& tmpl = o.at("chat_template").as_string();
  d.chat_template.assign(tmpl.c_str(), tmpl.size());
  return d;
}

struct token_case {
  std::string text;
  bool special = false;
  std::vector<token_id> ids;
};

inline std::vector<token_case> load_token_cases(const std::string& name) {
  std::vector<token_case> out;
  const boost::json::value doc = read_json(golden_path(name));
  for (const auto& v : doc.as_object().at("cases").as_array()) {
    const auto& c = v.as_object();
    token_case tc;
    if (const auto* t = c.if_contains("text")) {
      tc.text.assign(t->as_string().c_str(), t->as_string().size());
    } else {
      const auto& hex = c.at("hex").as_string();
      for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
        tc.text.push_back(static_cast<char>(std::stoi(std::string(hex.data() + i, 2), nullptr, 16)));
      }
    }
    tc.special = c.at("special").as_bool();
    for (const auto& id : c.at("ids").as_array()) tc.ids.push_back(static_cast<token_id>(id.as_int64()));
    out.push_back(std::move(tc));
  }
  return out;
}

}  // namespace sluice::engine::test
