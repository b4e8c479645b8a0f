// GGUF parsing with bounds checks on every read. Layout (little-endian):
//   magic "GGUF", u32 version, u64 n_tensors, u64 n_kv, n_kv x (string key, u32 type, value),
//   n_tensors x (string name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset), padding to
//   general.alignment, then the tensor data. Strings are u64 length + bytes (no terminator).
#include "gguf.h"

#include <algorithm>
#include <cstring>

#include "architectures.h"
#include "tensor_types.h"

namespace sluice::engine {
namespace {

constexpr uint64_t max_string_bytes = uint64_t(1) << 30;  // 1 GiB: no legitimate key or value is larger
constexpr uint64_t max_name_bytes = 256;                  // keys and tensor names
constexpr uint64_t max_dim = uint64_t(1) << 40;

std::string hex_offset(size_t off) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%zx", off);
  return buf;
}

class cursor {
 public:
  explicit cursor(std::span<const uint8_t> b) : bytes_(b) {}
  size_t pos() const { return pos_; }
  size_t remaining() const { return bytes_.size() - pos_; }
  const uint8_t* here() const { return bytes_.data() + pos_; }

  result<void> raw(void* out, size_t n, std::string_view what) {
    if (n > remaining()) return truncated(what);
    std::memcpy(out, here(), n);
    pos_ += n;
    return {};
  }
  result<void> skip(uint64_t n, std::string_view what) {
    if (n > remaining()) return truncated(what);
    pos_ += size_t(n);
    return {};
  }
  template <class T>
  result<T> get(std::string_view what) {
    T v{};
    if (auto r = raw(&v, sizeof v, what); !r) return r.error();
    return v;
  }
  result<std::string_view> str(std::string_view what, uint64_t max_len) {
    auto len = get<uint64_t>(what);
    if (!len) return len.error();
    if (*len > max_len)
      return error{errc::bad_file, std::string(what) + ": string length " + std::to_string(*len) +
                                       " too large at offset " + hex_offset(pos_ - 8)};
    if (*len > remaining()) return truncated(what);
    std::string_view s(reinterpret_cast<const char*>(here()), size_t(*len));
    pos_ += size_t(*len);
    return s;
  }
  error truncated(std::string_view what) const {
    return error{errc::bad_file, "truncated file: " + std::string(what) + " at offset " + hex_offset(pos_) +
                                     " runs past the end (" + std::to_string(bytes_.size()) + " bytes)"};
  }

 private:
  std::span<const uint8_t> bytes_;
  size_t pos_ = 0;
};

size_t scalar_size(gguf_type t) {
  switch (t) {
    case gguf_type::u8: case gguf_type::i8: case gguf_type::boolean: return 1;
    case gguf_type::u16: case gguf_type::i16: return 2;
    case gguf_type::u32: case gguf_type::i32: case gguf_type::f32: return 4;
    case gguf_type::u64: case gguf_type::i64: case gguf_type::f64: return 8;
    default: return 0;
  }
}

bool is_integer(gguf_type t) {
  return t == gguf_type::u8 || t == gguf_type::i8 || t == gguf_type::u16 || t == gguf_type::i16 ||
         t == gguf_type::u32 || t == gguf_type::i32 || t == gguf_type::u64 || t == gguf_type::i64;
}

// Reads one scalar of type t from p into v (i/u/f set where meaningful).
void decode_scalar(gguf_type t, const uint8_t* p, gguf_value& v) {
  auto rd = [p](auto x) { std::memcpy(&x, p, sizeof x); return x; };
  switch (t) {
    case gguf_type::u8: v.u = rd(uint8_t{}); v.i = int64_t(v.u); break;
    case gguf_type::i8: v.i = rd(int8_t{}); v.u = uint64_t(v.i); break;
    case gguf_type::u16: v.u = rd(uint16_t{}); v.i = int64_t(v.u); break;
    case gguf_type::i16: v.i = rd(int16_t{}); v.u = uint64_t(v.i); break;
    case gguf_type::u32: v.u = rd(uint32_t{}); v.i = int64_t(v.u); break;
    case gguf_type::i32: v.i = rd(int32_t{}); v.u = uint64_t(v.i); break;
    case gguf_type::u64: v.u = rd(uint64_t{}); v.i = int64_t(v.u); break;
    case gguf_type::i64: v.i = rd(int64_t{}); v.u = uint64_t(v.i); break;
    case gguf_type::f32: v.f = rd(float{}); break;
    case gguf_type::f64: v.f = rd(double{}); break;
    case gguf_type::boolean: v.u = rd(uint8_t{}); v.i = int64_t(v.u); break;
    default: break;
  }
  if (is_integer(t)) v.f = (t == gguf_type::u64) ? double(v.u) : double(v.i);
}

result<void> read_value(cursor& c, gguf_type t, gguf_value& v, const std::string& key) {
  v.type = t;
  if (size_t n = scalar_size(t)) {
    if (n > c.remaining()) return c.truncated("value of '" + key + "'");
    decode_scalar(t, c.here(), v);
    if (t == gguf_type::boolean && v.u > 1)
      return error{errc::bad_file, "metadata '" + key + "': bool value " + std::to_string(v.u) + " is not 0 or 1"};
    return c.skip(n, key);
  }
  if (t == gguf_type::string) {
    auto s = c.str("string value of '" + key + "'", max_string_bytes);
    if (!s) return s.error();
    v.str = *s;
    return {};
  }
  if (t == gguf_type::array) {
    auto et = c.get<uint32_t>("array type of '" + key + "'");
    if (!et) return et.error();
    auto cnt = c.get<uint64_t>("array length of '" + key + "'");
    if (!cnt) return cnt.error();
    gguf_type e = gguf_type(*et);
    v.elem_type = e;
    v.count = *cnt;
    if (*et > 12 || e == gguf_type::array)
      return error{errc::bad_file, "metadata '" + key + "': array element type " + std::to_string(*et) +
                                       (e == gguf_type::array ? " (nested arrays are not supported)" : " is unknown")};
    // Every element takes at least this many bytes, so a count beyond remaining/min is impossible.
    uint64_t min_elem = e == gguf_type::string ? 8 : scalar_size(e);
    if (*cnt > c.remaining() / min_elem)
      return error{errc::bad_file, "metadata '" + key + "': array length " + std::to_string(*cnt) +
                                       " exceeds the file size at offset " + hex_offset(c.pos())};
    if (e == gguf_type::string) {
      v.strings.reserve(size_t(*cnt));
      for (uint64_t i = 0; i < *cnt; ++i) {
        auto s = c.str("element " + std::to_string(i) + " of '" + key + "'", max_string_bytes);
        if (!s) return s.error();
        v.strings.push_back(*s);
      }
      return {};
    }
    v.raw = c.here();
    return c.skip(*cnt * min_elem, key);
  }
  return error{errc::bad_file, "metadata '" + key + "': unknown value type " + std::to_string(uint32_t(t)) +
                                   " at offset " + hex_offset(c.pos() - 4)};
}

bool valid_name(std::string_view s) {
  if (s.empty()) return false;
  for (char ch : s)
    if (static_cast<unsigned char>(ch) < 0x20) return false;
  return true;
}

bool mul_overflows(uint64_t a, uint64_t b, uint64_t& out) { return __builtin_mul_overflow(a, b, &out); }

}  // namespace

result<std::unique_ptr<gguf_file>> gguf_file::parse(std::unique_ptr<mapped_file> file) {
  std::unique_ptr<gguf_file> g(new gguf_file(std::move(file)));
  if (auto r = g->parse_all(); !r) return r.error();
  return g;
}

result<void> gguf_file::parse_all() {
  cursor c(file_->bytes());
  auto magic = c.get<uint32_t>("magic");
  if (!magic) return magic.error();
  if (*magic != 0x46554747u) return error{errc::bad_file, "not a GGUF file (bad magic at offset 0x0)"};
  auto ver = c.get<uint32_t>("version");
  if (!ver) return ver.error();
  if (*ver != 2 && *ver != 3)
    return error{errc::bad_file, "unsupported GGUF version " + std::to_string(*ver) + " (expected 2 or 3)"};
  version_ = *ver;
  auto n_tensors = c.get<uint64_t>("tensor count");
  if (!n_tensors) return n_tensors.error();
  auto n_kv = c.get<uint64_t>("metadata count");
  if (!n_kv) return n_kv.error();
  // Minimal encodings: a kv takes >= 8+1+4+1 bytes, a tensor info >= 8+1+4+8+4+8.
  if (*n_kv > c.remaining() / 14)
    return error{errc::bad_file, "metadata count " + std::to_string(*n_kv) + " exceeds what the file can hold"};
  if (*n_tensors > c.remaining() / 33)
    return error{errc::bad_file, "tensor count " + std::to_string(*n_tensors) + " exceeds what the file can hold"};

  kv_.reserve(size_t(*n_kv));
  for (uint64_t i = 0; i < *n_kv; ++i) {
    auto key = c.str("metadata key #" + std::to_string(i), max_name_bytes);
    if (!key) return key.error();
    std::string k(*key);
    if (!valid_name(k))
      return error{errc::bad_file, "metadata key #" + std::to_string(i) + " is empty or has control characters"};
    auto t = c.get<uint32_t>("type of '" + k + "'");
    if (!t) return t.error();
    gguf_value v;
    if (auto r = read_value(c, gguf_type(*t), v, k); !r) return r.error();
    kv_.emplace_back(std::move(k), std::move(v));
  }
  for (size_t i = 0; i < kv_.size(); ++i)
    if (!kv_index_.emplace(kv_[i].first, i).second)
      return error{errc::bad_file, "duplicate metadata key '" + kv_[i].first + "'"};

  if (auto a = find("general.alignment")) {
    if (a->type != gguf_type::u32 || a->u == 0 || (a->u & (a->u - 1)) != 0 || a->u > (1u << 20))
      return error{errc::bad_file, "general.alignment must be a u32 power of two <= 1 MiB"};
    alignment_ = a->u;
  }

  // Tensors of types this engine does not read are collected (name of the type -> count, first tensor) and
  // reported together with the architecture, once all tensor infos are read: one message says all that is missing.
  std::vector<std::pair<std::string, std::pair<int, std::string>>> unsupported;
  tensors_.reserve(size_t(*n_tensors));
  for (uint64_t i = 0; i < *n_tensors; ++i) {
    auto name = c.str("tensor name #" + std::to_string(i), max_name_bytes);
    if (!name) return name.error();
    gguf_tensor t;
    t.name = std::string(*name);
    if (!valid_name(t.name))
      return error{errc::bad_file, "tensor #" + std::to_string(i) + " has an empty or invalid name"};
    auto nd = c.get<uint32_t>("n_dims of tensor '" + t.name + "'");
    if (!nd) return nd.error();
    if (*nd < 1 || *nd > 4)
      return error{errc::bad_file, "tensor '" + t.name + "': n_dims " + std::to_string(*nd) + " not in 1..4"};
    t.n_dims = *nd;
    t.n_elems = 1;
    for (uint32_t d = 0; d < *nd; ++d) {
      auto ne = c.get<uint64_t>("dims of tensor '" + t.name + "'");
      if (!ne) return ne.error();
      if (*ne == 0 || *ne > max_dim)
        return error{errc::bad_file, "tensor '" + t.name + "': dimension " + std::to_string(d) + " = " +
                                         std::to_string(*ne) + " is out of range"};
      t.ne[d] = *ne;
      if (mul_overflows(t.n_elems, *ne, t.n_elems) || t.n_elems > (uint64_t(1) << 48))
        return error{errc::bad_file, "tensor '" + t.name + "': element count overflows"};
    }
    auto ty = c.get<uint32_t>("type of tensor '" + t.name + "'");
    if (!ty) return ty.error();
    t.type = *ty;
    auto off = c.get<uint64_t>("offset of tensor '" + t.name + "'");
    if (!off) return off.error();
    t.offset = *off;
    auto tr = traits_of(t.type);
    if (!tr) {
      if (!(t.type <= 30 || t.type == 34 || t.type == 35 || t.type == 39))
        return error{errc::bad_file, "tensor '" + t.name + "' has unknown type id " + std::to_string(t.type)};
      const std::string type = ggml_type_name(t.type);
      auto it = std::find_if(unsupported.begin(), unsupported.end(), [&](const auto& u) { return u.first == type; });
      if (it == unsupported.end()) unsupported.push_back({type, {1, t.name}});
      else ++it->second.first;
      continue;
    }
    if (t.ne[0] % tr->block_elems != 0)
      return error{errc::bad_file, "tensor '" + t.name + "': row length " + std::to_string(t.ne[0]) +
                                       " is not a multiple of the " + tr->name + " block size"};
    uint64_t row_bytes = t.ne[0] / tr->block_elems * tr->block_bytes;
    if (mul_overflows(row_bytes, t.n_elems / t.ne[0], t.n_bytes))
      return error{errc::bad_file, "tensor '" + t.name + "': byte count overflows"};
    if (t.offset % alignment_ != 0)
      return error{errc::bad_file, "tensor '" + t.name + "': offset " + std::to_string(t.offset) +
                                       " is not aligned to " + std::to_string(alignment_)};
    tensors_.push_back(std::move(t));
  }
  if (!unsupported.empty()) {
    std::string msg = "tensor type";
    msg += unsupported.size() > 1 ? "s " : " ";
    for (size_t i = 0; i < unsupported.size(); ++i) {
      const auto& [type, seen] = unsupported[i];
      msg += (i ? ", " : "") + type + " (" + std::to_string(seen.first) + " tensor" + (seen.first > 1 ? "s" : "") +
             ", e.g. '" + seen.second + "')";
    }
    msg += unsupported.size() > 1 ? " are" : " is";
    msg += " not supported (supported: F32, F16, BF16, Q8_0, Q6_K, Q5_K, Q5_1, Q5_0, Q4_K, Q4_1, Q4_0)";
    if (auto arch = find("general.architecture");
        arch && arch->type == gguf_type::string && !is_supported_architecture(arch->str))
      msg += "; architecture '" + std::string(arch->str) + "' is not supported either (supported: " +
             supported_architectures_text() + ")";
    return error{errc::unsupported, msg};
  }
  for (size_t i = 0; i < tensors_.size(); ++i)
    if (!tensor_index_.emplace(tensors_[i].name, i).second)
      return error{errc::bad_file, "duplicate tensor name '" + tensors_[i].name + "'"};

  // Data section: starts at the next multiple of the alignment after the tensor infos.
  uint64_t data_start = (uint64_t(c.pos()) + alignment_ - 1) / alignment_ * alignment_;
  uint64_t size = file_->bytes().size();
  if (!tensors_.empty() && data_start > size)
    return error{errc::bad_file, "truncated file: tensor data section starts at " + hex_offset(data_start) +
                                     " past the end (" + std::to_string(size) + " bytes)"};
  std::vector<const gguf_tensor*> by_offset;
  by_offset.reserve(tensors_.size());
  for (auto& t : tensors_) {
    uint64_t avail = size - data_start;
    if (t.offset > avail || t.n_bytes > avail - t.offset)
      return error{errc::bad_file, "tensor '" + t.name + "': data [" + std::to_string(t.offset) + ", +" +
                                       std::to_string(t.n_bytes) + ") runs past the end of the file"};
    t.data = file_->bytes().data() + data_start + t.offset;
    by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const gguf_tensor* a, const gguf_tensor* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i - 1]->offset + by_offset[i - 1]->n_bytes > by_offset[i]->offset)
      return error{errc::bad_file, "tensors '" + by_offset[i - 1]->name + "' and '" + by_offset[i]->name +
                                       "' overlap"};
  return {};
}

const gguf_value* gguf_file::find(std::string_view key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const gguf_tensor* gguf_file::tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {
error wrong_type(std::string_view key, std::string_view want) {
  return error{errc::bad_file, "metadata '" + std::string(key) + "' should be " + std::string(want)};
}
}  // namespace

result<std::optional<std::string>> gguf_file::get_string(std::string_view key) const {
  auto v = find(key);
  if (!v) return std::optional<std::string>{};
  if (v->type != gguf_type::string) return wrong_type(key, "a string");
  return std::optional<std::string>(std::string(v->str));
}

result<std::optional<uint64_t>> gguf_file::get_uint(std::string_view key) const {
  auto v = find(key);
  if (!v) return std::optional<uint64_t>{};
  if (!is_integer(v->type) || (v->type != gguf_type::u64 && v->i < 0))
    return wrong_type(key, "a non-negative integer");
  return std::optional<uint64_t>(v->u);
}

result<std::optional<double>> gguf_file::get_float(std::string_view key) const {
  auto v = find(key);
  if (!v) return std::optional<double>{};
  if (v->type != gguf_type::f32 && v->type != gguf_type::f64 && !is_integer(v->type))
    return wrong_type(key, "a number");
  return std::optional<double>(v->f);
}

result<std::optional<bool>> gguf_file::get_bool(std::string_view key) const {
  auto v = find(key);
  if (!v) return std::optional<bool>{};
  if (v->type != gguf_type::boolean) return wrong_type(key, "a bool");
  return std::optional<bool>(v->u != 0);
}

result<std::optional<std::vector<std::string>>> gguf_file::get_string_array(std::string_view key) const {
  auto v = find(key);
  if (!v) return std::optional<std::vector<std::string>>{};
  if (v->type != gguf_type::array || v->elem_type != gguf_type::string) return wrong_type(key, "an array of strings");
  std::vector<std::string> out;
  out.reserve(v->strings.size());
  for (auto s : v->strings) out.emplace_back(s);
  return std::optional<std::vector<std::string>>(std::move(out));
}

result<std::optional<std::vector<int32_t>>> gguf_file::get_int_array(std::string_view key) const {
  auto v = find(key);
  if (!v) return std::optional<std::vector<int32_t>>{};
  if (v->type != gguf_type::array || !is_integer(v->elem_type) || scalar_size(v->elem_type) > 4)
    return wrong_type(key, "an array of 32-bit integers");
  std::vector<int32_t> out(size_t(v->count));
  size_t es = scalar_size(v->elem_type);
  for (size_t i = 0; i < out.size(); ++i) {
    gguf_value tmp;
    decode_scalar(v->elem_type, v->raw + i * es, tmp);
    out[i] = int32_t(tmp.i);
  }
  return std::optional<std::vector<int32_t>>(std::move(out));
}

result<std::optional<std::vector<float>>> gguf_file::get_float_array(std::string_view key) const {
  auto v = find(key);
  if (!v) return std::optional<std::vector<float>>{};
  if (v->type != gguf_type::array || v->elem_type != gguf_type::f32) return wrong_type(key, "an array of f32");
  std::vector<float> out(size_t(v->count));
  if (!out.empty()) std::memcpy(out.data(), v->raw, out.size() * sizeof(float));
  return std::optional<std::vector<float>>(std::move(out));
}

}  // namespace sluice::engine
