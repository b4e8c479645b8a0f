// JSON helpers: escaping (including invalid UTF-8) and the two ways of finding top-level members for rewriting.
#include <catch2/catch.hpp>

#include <simdjson.h>

#include <string>
#include <vector>

#include "api/json_util.h"

using namespace sluice::gateway;

TEST_CASE("strings are escaped for JSON", "[json]") {
  std::string out;
  append_json_string(out, "a\"b\\c\nd\x01 \xe2\x82\xac");
  CHECK(out == "\"a\\\"b\\\\c\\nd\\u0001 \xe2\x82\xac\"");
  out.clear();
  append_json_string(out, "bad \xff\xfe utf8 \xe2\x82");  // invalid and truncated sequences
  CHECK(out == "\"bad \xEF\xBF\xBD\xEF\xBF\xBD utf8 \xEF\xBF\xBD\xEF\xBF\xBD\"");
}

TEST_CASE("numbers never produce inf or nan", "[json]") {
  std::string out;
  append_json_number(out, 1.0 / 0.0);
  CHECK(out == "0");
  out.clear();
  append_json_number(out, -0.25);
  CHECK(out == "-0.25");
}

TEST_CASE("the scanner finds top-level members with escaped keys and nested values", "[json]") {
  const std::string s = R"( {"a" : [1,{"model":"x"}], "mod\u0065l":"m\"1" , "z":{"q":"}"}} )";
  std::vector<json_member_span> m;
  REQUIRE(scan_top_level_members(s, m));
  REQUIRE(m.size() == 3);
  CHECK(m[0].key == "a");
  CHECK(s.substr(m[0].value_begin, m[0].value_end - m[0].value_begin) == R"([1,{"model":"x"}])");
  CHECK(m[1].key == "model");
  CHECK(s.substr(m[1].value_begin, m[1].value_end - m[1].value_begin) == R"("m\"1")");
  CHECK(s.substr(m[2].value_begin, m[2].value_end - m[2].value_begin) == R"({"q":"}"})");
  CHECK(s[find_top_level_close(s)] == '}');
  CHECK(find_top_level_close(s) == s.size() - 2);
  CHECK_FALSE(scan_top_level_members("[1]", m));
  CHECK_FALSE(scan_top_level_members(R"({"a":)", m));
}


// The positions read off simdjson's structural index are the ones the byte scanner finds, for any shape.
TEST_CASE("member positions from the parser's structure match the scanner", "[json]") {
  const std::vector<std::string> docs = {
      R"({"model":"bench","messages":[{"role":"user","content":"hi"}]})",
      R"( {"a" : [1,{"model":"x"}], "mod\u0065l":"m\"1" , "z":{"q":"}"}} )",
      R"({"messages":[{"role":"user","content":"a, b: {c} [d]"}],"model" : "last" })",
      R"({"n":-1.5e3,"t":true,"f":false,"z":null,"s":"\\","e":{},"l":[]})",
      "{\n  \"model\": \"m\",\n  \"stream_options\": {\"include_usage\": false}\n}\n",
      R"({})",
      R"({"only":[[[[]]],{"x":[{}]}]})",
  };
  simdjson::dom::parser parser;
  std::vector<json_member_pos> found;
  std::vector<json_member_span> scanned;
  for (const std::string& doc : docs) {
    INFO(doc);
    simdjson::dom::element root;
    REQUIRE(parser.parse(doc).get(root) == simdjson::SUCCESS);
    size_t close = 0;
    REQUIRE(member_positions_from_structurals(doc, parser.implementation->structural_indexes.get(),
                                              parser.implementation->n_structural_indexes, found, close));
    REQUIRE(scan_top_level_members(doc, scanned));
    REQUIRE(found.size() == scanned.size());
    for (size_t i = 0; i < found.size(); ++i) {
      CHECK(found[i].key_begin == scanned[i].key_begin);
      CHECK(found[i].value_begin == scanned[i].value_begin);
      CHECK(found[i].value_end == scanned[i].value_end);
    }
    CHECK(close == find_top_level_close(doc));
  }
  // Positions that do not describe an object are refused (the caller then scans).
  const uint32_t not_object[] = {0, 1};
  size_t close = 0;
  CHECK_FALSE(member_positions_from_structurals("[]", not_object, 2, found, close));
}
