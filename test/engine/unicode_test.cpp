// Tests for the Unicode helpers behind the pre-tokenizer and text stream: category lookups from the
// generated table, lenient decoding (llama.cpp-compatible), strict sanitising, incomplete-tail detection.
#include "unicode.h"

#include <catch2/catch.hpp>

using namespace sluice::engine;

TEST_CASE("code point categories", "[unicode]") {
  CHECK(props_of(U'a').is_letter());
  CHECK(props_of(U'\u00e9').is_letter());
  CHECK(props_of(U'\u4e2d').is_letter());      // CJK ideograph (Lo)
  CHECK(props_of(U'\U00020000').is_letter());  // CJK extension B, above the BMP
  CHECK(props_of(U'7').is_number());
  CHECK(props_of(U'\u0663').is_number());  // Arabic-Indic digit
  CHECK(props_of(U'\u00bd').is_number());  // vulgar fraction (No)
  CHECK(props_of(U'\u216b').is_number());  // Roman numeral (Nl)
  CHECK(props_of(U'\u0301').cat == ucat::mark);
  CHECK(props_of(U'!').cat == ucat::punctuation);
  CHECK(props_of(U'\U0001F600').cat == ucat::symbol);
  CHECK(props_of(U'\u00a0').white_space);
  CHECK(props_of(U'\u3000').white_space);
  CHECK(props_of(U'\u0085').white_space);
  CHECK_FALSE(props_of(U'\u200b').white_space);  // zero-width space is Cf, not White_Space
  CHECK_FALSE(props_of(U'\x1c').white_space);    // Python's str.isspace says yes; regex \s says no
  CHECK(props_of(0x10FFFF).cat == ucat::unassigned);
  CHECK(props_of(0x110000).cat == ucat::unassigned);
}

TEST_CASE("lenient decoding replaces malformed bytes one at a time", "[unicode]") {
  auto decode_all = [](std::string_view s) {
    std::u32string out;
    for (std::size_t pos = 0; pos < s.size();) out.push_back(decode_utf8(s, pos));
    return out;
  };
  CHECK(decode_all("a\xC3\xA9") == U"a\u00e9");
  CHECK(decode_all("\xF0\x9F\x98\x80") == U"\U0001F600");
  CHECK(decode_all("\xFF"
                   "a") ==
        U"\uFFFD"
        "a");
  CHECK(decode_all("\xE2\x82") == U"\uFFFD\uFFFD");
  CHECK(decode_all("\x80") == U"\uFFFD");
}

TEST_CASE("sanitize_utf8 keeps valid text and replaces maximal invalid subparts", "[unicode]") {
  CHECK(sanitize_utf8("plain \xC3\xA9 \xF0\x9F\x98\x80") == "plain \xC3\xA9 \xF0\x9F\x98\x80");
  CHECK(sanitize_utf8("\xF0\x9F"
                      "a") ==
        "\xEF\xBF\xBD"
        "a");                                                      // one U+FFFD for the truncated sequence
  CHECK(sanitize_utf8("\xC0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD");  // overlong
  CHECK(sanitize_utf8("\xED\xA0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  CHECK(sanitize_utf8("") == "");
}

TEST_CASE("incomplete_utf8_tail counts the bytes of an unfinished last character", "[unicode]") {
  CHECK(incomplete_utf8_tail("abc") == 0);
  CHECK(incomplete_utf8_tail("a\xF0") == 1);
  CHECK(incomplete_utf8_tail("a\xF0\x9F") == 2);
  CHECK(incomplete_utf8_tail("a\xF0\x9F\x98") == 3);
  CHECK(incomplete_utf8_tail("a\xF0\x9F\x98\x80") == 0);
  CHECK(incomplete_utf8_tail("\xC3") == 1);
  CHECK(incomplete_utf8_tail("\xC3\xA9") == 0);
  CHECK(incomplete_utf8_tail("\x80\x80\x80\x80") == 0);  // garbage is not held back forever
  CHECK(incomplete_utf8_tail("") == 0);
}
