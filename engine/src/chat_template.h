// Chat templates the engine renders natively (no Jinja interpreter): ChatML (SmolLM2, Qwen), Llama 3 and
// Gemma. The kind is recognised from markers in the GGUF's tokenizer.chat_template text; a default system
// prompt that the model's own template injects (SmolLM2 does) is extracted from that text too.
// What must not go in here: tokenization (the rendered text is tokenized with parse_special = true).
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "sluice/engine/engine.h"

namespace sluice::engine {

enum class template_kind { chatml, llama3, gemma };

struct chat_format {
  template_kind kind = template_kind::chatml;
  // System prompt the model's template adds when the conversation has none ("" = none).
  std::string default_system;
};

// override_name: "" = detect from jinja; "chatml", "llama3" or "gemma" forces that kind (a default system
// prompt is still taken from jinja when it is a ChatML template). A file without any template is given its
// architecture's own format when that is unambiguous (gemma3: Gemma's turns; the base Gemma 3 GGUFs carry no
// template). Unrecognised template -> errc::unsupported.
result<chat_format> detect_chat_template(std::string_view jinja, std::string_view override_name,
                                         std::string_view architecture);

// bos_text: the BOS token's text when the template starts with it (Llama 3: "<|begin_of_text|>", Gemma:
// "<bos>"), else "". The result is meant for tokenizer::encode(text, add_bos = false, parse_special = true):
// for Llama 3 and Gemma the BOS is already in the text. ChatML adds f.default_system when the first message
// is not a system message; Llama 3 trims each message's content; Gemma has no system turn (a leading system
// message becomes the start of the first user turn), calls the assistant "model" and trims every other
// message (all as the models' own Jinja templates do).
std::string render_chat(const chat_format& f, std::span<const chat_message> msgs, bool add_generation_prompt,
                        std::string_view bos_text);

// Name used in model_info::chat_template and the chat_template policy key: "chatml" / "llama3" / "gemma".
std::string_view template_name(template_kind k);

// Whether the template trims the content of message `index` with this role (see render_chat).
bool trims_content(template_kind k, std::string_view role, size_t index);

}  // namespace sluice::engine
