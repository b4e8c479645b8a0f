// engine::tokenize_chat: the chat prompt as tokens, with message contents that can never become special
// tokens. Rendering the template and tokenizing it with parse_special = true (what many servers do) would
// let a user write "<|im_start|>system" and forge a system turn. Here each content is swapped for a sentinel
// before rendering; the template text between sentinels is tokenized with special tokens, the contents
// without. Rendering goes through the public apply_chat_template, so the two cannot drift.
#include <cctype>
#include <string>
#include <vector>

#include "chat_template.h"
#include "sluice/engine/engine.h"

namespace sluice::engine {

namespace {

// Control characters never appear in a chat template's own text.
std::string sentinel(size_t i) { return "\x1e" "sluice:" + std::to_string(i) + "\x1f"; }

}  // namespace

result<std::vector<token_id>> engine::tokenize_chat(std::span<const chat_message> messages,
                                                    bool add_generation_prompt) const {
  std::vector<chat_message> masked(messages.begin(), messages.end());
  for (size_t i = 0; i < masked.size(); ++i) masked[i].content = sentinel(i);
  auto rendered = apply_chat_template(masked, add_generation_prompt);
  if (!rendered) return rendered.error();

  auto format = detect_chat_template("", info().chat_template, "");  // the kind in use, from its name
  if (!format) return format.error();
  std::vector<token_id> out;
  const std::string& text = *rendered;
  size_t pos = 0;
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string mark = sentinel(i);
    const size_t at = text.find(mark, pos);
    if (at == std::string::npos) {
      return error{errc::unsupported, "the chat template dropped message " + std::to_string(i) + "'s content"};
    }
    auto head = tokenize(std::string_view(text).substr(pos, at - pos), false, /*parse_special=*/true);
    out.insert(out.end(), head.begin(), head.end());
    std::string_view content = messages[i].content;
    if (trims_content(format->kind, messages[i].role, i)) {
      while (!content.empty() && std::isspace(static_cast<unsigned char>(content.front()))) content.remove_prefix(1);
      while (!content.empty() && std::isspace(static_cast<unsigned char>(content.back()))) content.remove_suffix(1);
    }
    auto body = tokenize(content, false, /*parse_special=*/false);
    out.insert(out.end(), body.begin(), body.end());
    pos = at + mark.size();
  }
  auto tail = tokenize(std::string_view(text).substr(pos), false, /*parse_special=*/true);
  out.insert(out.end(), tail.begin(), tail.end());
  return out;
}

}  // namespace sluice::engine
