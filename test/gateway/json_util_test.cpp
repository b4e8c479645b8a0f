// JSON helpers: escaping (including invalid UTF-8) and the top-level member scanner used for rewriting.
#include <catch2/catch.hpp>

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

