// Type table for the ggml element types the engine supports, and names for the ones it does not.
#include "tensor_types.h"

namespace sluice::engine {

std::optional<type_traits> traits_of(uint32_t raw_type) {
  switch (raw_type) {
    case 0: return type_traits{"F32", 1, 4};
    case 1: return type_traits{"F16", 1, 2};
    case 2: return type_traits{"Q4_0", 32, 18};
    case 3: return type_traits{"Q4_1", 32, 20};
    case 6: return type_traits{"Q5_0", 32, 22};
    case 7: return type_traits{"Q5_1", 32, 24};
    case 8: return type_traits{"Q8_0", 32, 34};
    case 12: return type_traits{"Q4_K", 256, 144};
    case 13: return type_traits{"Q5_K", 256, 176};
    case 14: return type_traits{"Q6_K", 256, 210};
    case 30: return type_traits{"BF16", 1, 2};
    default: return std::nullopt;
  }
}

std::string ggml_type_name(uint32_t raw_type) {
  static const char* const names[] = {"F32",  "F16",  "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1",
                                      "Q8_0", "Q8_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K",
                                      "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S",
                                      "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M",
                                      "BF16"};
  if (raw_type < sizeof(names) / sizeof(names[0])) return names[raw_type];
  return "type " + std::to_string(raw_type);
}

}  // namespace sluice::engine
