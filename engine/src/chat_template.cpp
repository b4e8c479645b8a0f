// Native renderers for the chat templates the engine supports: see chat_template.h.
// What must not go in here: a general Jinja interpreter (recognise markers, render known formats exactly).
#include "chat_template.h"

namespace sluice::engine {

namespace {

constexpr std::string_view chatml_start = "<|im_start|>";
constexpr std::string_view chatml_end = "<|im_end|>";
constexpr std::string_view gemma_start = "<start_of_turn>";
constexpr std::string_view gemma_end = "<end_of_turn>";

// The system prompt a ChatML template injects when the conversation has none: a string literal of the form
// '<|im_start|>system\n...<|im_end|>' (SmolLM2, Qwen 2.5). Candidates that splice in variables are skipped.
std::string chatml_default_system(std::string_view jinja) {
  const std::string_view marker = "<|im_start|>system";
  for (std::size_t pos = jinja.find(marker); pos != std::string_view::npos; pos = jinja.find(marker, pos + 1)) {
    std::size_t body = pos + marker.size();
    std::size_t end = jinja.find(chatml_end, body);
    if (end == std::string_view::npos) break;
    std::string_view raw = jinja.substr(body, end - body);
    if (raw.find_first_of("'\"{}+") != std::string_view::npos) continue;  // not a plain literal
    std::string text;
    for (std::size_t i = 0; i < raw.size(); ++i) {  // undo the jinja string escapes a literal may hold
      if (raw[i] == '\\' && i + 1 < raw.size()) {
        char e = raw[++i];
        text.push_back(e == 'n' ? '\n' : e == 't' ? '\t' : e);
      } else {
        text.push_back(raw[i]);
      }
    }
    if (!text.starts_with("\n")) continue;
    text.erase(0, 1);
    if (!text.empty()) return text;
  }
  return {};
}

std::string_view trim(std::string_view s) {
  const std::string_view ws = " \t\n\r\v\f";
  std::size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  std::size_t e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

}  // namespace

result<chat_format> detect_chat_template(std::string_view jinja, std::string_view override_name,
                                         std::string_view architecture) {
  chat_format f;
  auto has = [&](std::string_view a, std::string_view b) {
    return jinja.find(a) != std::string_view::npos && jinja.find(b) != std::string_view::npos;
  };
  if (override_name == "chatml") {
    f.kind = template_kind::chatml;
  } else if (override_name == "llama3") {
    f.kind = template_kind::llama3;
  } else if (override_name == "gemma") {
    f.kind = template_kind::gemma;
  } else if (!override_name.empty()) {
    return error{errc::unsupported, "chat template override '" + std::string(override_name) +
                                        "' is unknown (expected chatml, llama3 or gemma)"};
  } else if (has(chatml_start, chatml_end)) {
    f.kind = template_kind::chatml;
  } else if (has("<|start_header_id|>", "<|eot_id|>")) {
    f.kind = template_kind::llama3;
  } else if (has(gemma_start, gemma_end)) {
    f.kind = template_kind::gemma;
  } else if (jinja.empty() && architecture == "gemma3") {
    f.kind = template_kind::gemma;
  } else if (jinja.empty()) {
    return error{errc::unsupported,
                 "the model has no tokenizer.chat_template; set chat_template to chatml, llama3 or gemma"};
  } else {
    return error{errc::unsupported,
                 "tokenizer.chat_template is not a recognised format (supported: ChatML, Llama 3, Gemma); "
                 "set chat_template to chatml, llama3 or gemma to force one"};
  }
  if (f.kind == template_kind::chatml) f.default_system = chatml_default_system(jinja);
  return f;
}

std::string render_chat(const chat_format& f, std::span<const chat_message> msgs, bool add_generation_prompt,
                        std::string_view bos_text) {
  std::string out;
  switch (f.kind) {
    case template_kind::chatml: {
      auto block = [&](std::string_view role, std::string_view content) {
        out.append(chatml_start).append(role).append("\n").append(content).append(chatml_end).append("\n");
      };
      if (!msgs.empty() && msgs.front().role != "system" && !f.default_system.empty()) {
        block("system", f.default_system);
      }
      for (const chat_message& m : msgs) block(m.role, m.content);
      if (add_generation_prompt) out.append(chatml_start).append("assistant\n");
      break;
    }
    case template_kind::llama3: {
      // Llama 3's own template trims each message and puts BOS before the first one.
      auto header = [&](std::string_view role) {
        out.append("<|start_header_id|>").append(role).append("<|end_header_id|>\n\n");
      };
      if (!msgs.empty()) out.append(bos_text);
      for (const chat_message& m : msgs) {
        header(m.role);
        out.append(trim(m.content)).append("<|eot_id|>");
      }
      if (add_generation_prompt) header("assistant");
      break;
    }
    case template_kind::gemma: {
      if (!msgs.empty()) out.append(bos_text);
      // A leading system message has no turn of its own: it opens the first user turn, followed by a blank line.
      size_t i = 0;
      std::string_view prefix;
      if (!msgs.empty() && msgs.front().role == "system") {
        prefix = msgs.front().content;
        i = 1;
      }
      for (size_t first = i; i < msgs.size(); ++i) {
        const chat_message& m = msgs[i];
        out.append(gemma_start).append(m.role == "assistant" ? "model" : m.role).append("\n");
        if (i == first && !prefix.empty()) out.append(prefix).append("\n\n");
        out.append(trim(m.content)).append(gemma_end).append("\n");
      }
      if (add_generation_prompt) out.append(gemma_start).append("model\n");
      break;
    }
  }
  return out;
}

bool trims_content(template_kind k, std::string_view role, size_t index) {
  switch (k) {
    case template_kind::chatml:
      return false;
    case template_kind::llama3:
      return true;
    case template_kind::gemma:
      return !(index == 0 && role == "system");
  }
  return false;
}

std::string_view template_name(template_kind k) {
  switch (k) {
    case template_kind::chatml:
      return "chatml";
    case template_kind::llama3:
      return "llama3";
    case template_kind::gemma:
      return "gemma";
  }
  return "chatml";
}

}  // namespace sluice::engine
