// Tests for the native chat templates: exact strings against the models' own Jinja templates rendered by
// jinja2 (golden/templates_golden.json), detection, overrides and unsupported templates.
#include "chat_template.h"

#include <catch2/catch.hpp>
#include <map>

#include "tokenizer_golden.h"

using namespace sluice::engine;
using namespace sluice::engine::test;

TEST_CASE("rendered chats equal the models' Jinja templates exactly", "[chat_template]") {
  const boost::json::value doc = read_json(golden_path("templates_golden.json"));
  std::map<std::string, std::string> jinja;
  int n = 0;
  for (const auto& v : doc.as_object().at("cases").as_array()) {
    const auto& c = v.as_object();
    const std::string source(c.at("source").as_string().c_str());
    if (!jinja.count(source)) jinja[source] = load_tokenizer_data(source).chat_template;
    auto fmt = detect_chat_template(jinja[source], "", "llama");
    REQUIRE(fmt.has_value());
    CHECK(template_name(fmt->kind) == std::string_view(c.at("kind").as_string().c_str()));
    std::vector<chat_message> msgs;
    for (const auto& m : c.at("messages").as_array()) {
      const auto& mo = m.as_object();
      msgs.push_back({std::string(mo.at("role").as_string().c_str()),
                      std::string(mo.at("content").as_string().data(), mo.at("content").as_string().size())});
    }
    const auto& bos = c.at("bos_text").as_string();
    const auto& want = c.at("rendered").as_string();
    std::string got =
        render_chat(*fmt, msgs, c.at("add_generation_prompt").as_bool(), std::string_view(bos.data(), bos.size()));
    CHECK(got == std::string(want.data(), want.size()));
    ++n;
  }
  CHECK(n >= 20);
}

TEST_CASE("SmolLM2's default system prompt is taken from its template", "[chat_template]") {
  auto fmt = detect_chat_template(load_tokenizer_data("tokenizer_smollm2.json").chat_template, "", "llama");
  REQUIRE(fmt.has_value());
  CHECK(fmt->default_system == "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  std::vector<chat_message> msgs{{"user", "Hi"}};
  CHECK(render_chat(*fmt, msgs, true, "") ==
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST_CASE("plain ChatML and Llama 3 render the documented strings", "[chat_template]") {
  std::vector<chat_message> msgs{{"system", "S"}, {"user", "U"}, {"assistant", "A"}};
  auto chatml = detect_chat_template("{{'<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>'}}", "", "llama");
  REQUIRE(chatml.has_value());
  CHECK(chatml->kind == template_kind::chatml);
  CHECK(chatml->default_system.empty());
  CHECK(render_chat(*chatml, msgs, true, "") ==
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n"
        "<|im_start|>assistant\n");
  auto llama3 = detect_chat_template("", "llama3", "llama");
  REQUIRE(llama3.has_value());
  CHECK(render_chat(*llama3, msgs, false, "<|begin_of_text|>") ==
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nA<|eot_id|>");
}

TEST_CASE("Qwen-style ChatML picks the literal default system prompt, not the spliced one", "[chat_template]") {
  const std::string qwen =
      "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + "
      "'<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are Qwen, a helpful assistant.<|im_end|>\\n' }}"
      "{%- endif %}";
  auto fmt = detect_chat_template(qwen, "", "qwen2");
  REQUIRE(fmt.has_value());
  CHECK(fmt->default_system == "You are Qwen, a helpful assistant.");
}

TEST_CASE("Gemma turns: system folded into the first user turn, assistant called model, contents trimmed",
          "[chat_template]") {
  const std::string gemma = "{{ bos_token }}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + "
                            "'<end_of_turn>\\n' }}";
  auto fmt = detect_chat_template(gemma, "", "llama");
  REQUIRE(fmt.has_value());
  CHECK(fmt->kind == template_kind::gemma);
  CHECK(template_name(fmt->kind) == "gemma");
  std::vector<chat_message> msgs{{"system", " Be brief. "}, {"user", "  Hi\n"}, {"assistant", "Hello!\n\n"},
                                 {"user", "Bye"}};
  CHECK(render_chat(*fmt, msgs, true, "<bos>") ==
        "<bos><start_of_turn>user\n Be brief. \n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n");
  std::vector<chat_message> no_system{{"user", "Q"}};
  CHECK(render_chat(*fmt, no_system, false, "<bos>") == "<bos><start_of_turn>user\nQ<end_of_turn>\n");
  CHECK(render_chat(*fmt, {}, true, "<bos>") == "<start_of_turn>model\n");
  CHECK_FALSE(trims_content(template_kind::gemma, "system", 0));
  CHECK(trims_content(template_kind::gemma, "user", 1));
  CHECK_FALSE(trims_content(template_kind::chatml, "user", 0));
  CHECK(trims_content(template_kind::llama3, "system", 0));
}

TEST_CASE("a file without a template gets its architecture's format only when that is Gemma 3", "[chat_template]") {
  auto gemma = detect_chat_template("", "", "gemma3");
  REQUIRE(gemma.has_value());
  CHECK(gemma->kind == template_kind::gemma);
  auto llama = detect_chat_template("", "", "llama");
  REQUIRE_FALSE(llama.has_value());
  CHECK(llama.error().code == errc::unsupported);
  CHECK(llama.error().message.find("chatml, llama3 or gemma") != std::string::npos);
}

TEST_CASE("unknown templates are unsupported unless overridden", "[chat_template]") {
  const std::string mistral = "{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}";
  auto r = detect_chat_template(mistral, "", "llama");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == errc::unsupported);
  CHECK(r.error().message.find("chatml, llama3 or gemma") != std::string::npos);
  auto empty = detect_chat_template("", "", "qwen3");
  REQUIRE_FALSE(empty.has_value());
  CHECK(empty.error().code == errc::unsupported);
  auto forced = detect_chat_template(mistral, "chatml", "llama");
  REQUIRE(forced.has_value());
  CHECK(forced->kind == template_kind::chatml);
  auto forced_gemma = detect_chat_template(mistral, "gemma", "llama");
  REQUIRE(forced_gemma.has_value());
  CHECK(forced_gemma->kind == template_kind::gemma);
  auto bad = detect_chat_template(mistral, "mistral", "llama");
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().message.find("mistral") != std::string::npos);
}
