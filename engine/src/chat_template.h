// Chat templates the engine renders natively (no Jinja interpreter): ChatML (SmolLM2, Qwen) and Llama 3.
// The kind is recognised from markers in the GGUF's tokenizer.chat_template text.
// What must not go in here: tokenization (the rendered text is tokenized with parse_special = true).
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "sluice/engine/engine.h"

namespace sluice::engine {

enum class template_kind { chatml, llama3 };

// override_name: "" = detect from jinja; "chatml" or "llama3" forces that kind. Unknown -> errc::unsupported.
result<template_kind> detect_chat_template(std::string_view jinja, std::string_view override_name);

// bos_text: the BOS token's text when the template starts with it (Llama 3: "<|begin_of_text|>"), else "".
std::string render_chat(template_kind k, std::span<const chat_message> msgs, bool add_generation_prompt,
                        std::string_view bos_text);

// Name used in model_info::chat_template: "chatml" / "llama3".
std::string_view template_name(template_kind k);

}  // namespace sluice::engine
