// Chat templates the engine renders natively (no Jinja interpreter): ChatML (SmolLM2, Qwen) and Llama 3.
// The kind is recognised from markers in the GGUF's tokenizer.chat_template text; a default system prompt
// that the model's own template injects (SmolLM2 does) is extracted from that text too.
// What must not go in here: tokenization (the rendered text is tokenized with parse_special = true).
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "sluice/engine/engine.h"

namespace sluice::engine {

enum class template_kind { chatml, llama3 };

struct chat_format {
  template_kind kind = template_kind::chatml;
  // System prompt the model's template adds when the conversation has none ("" = none).
  std::string default_system;
};

// override_name: "" = detect from jinja; "chatml" or "llama3" forces that kind (a default system prompt is
// still taken from jinja when it is a ChatML template). Unrecognised template -> errc::unsupported.
result<chat_format> detect_chat_template(std::string_view jinja, std::string_view override_name);

// bos_text: the BOS token's text when the template starts with it (Llama 3: "<|begin_of_text|>"), else "".
// The result is meant for tokenizer::encode(text, add_bos = false, parse_special = true): for Llama 3 the BOS
// is already in the text. ChatML adds f.default_system when the first message is not a system message;
// Llama 3 trims each message's content (both as the models' own Jinja templates do).
std::string render_chat(const chat_format& f, std::span<const chat_message> msgs, bool add_generation_prompt,
                        std::string_view bos_text);

// Name used in model_info::chat_template: "chatml" / "llama3".
std::string_view template_name(template_kind k);

}  // namespace sluice::engine
