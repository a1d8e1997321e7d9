// The Jinja subset of mfqat/hf/jinja.h: a lexer with jinja2's whitespace rules (trim_blocks,
// lstrip_blocks, -/+ markers), a recursive-descent parser with jinja2's operator precedence, and a
// tree-walking renderer over JSON values with Python's semantics.
#include "mfqat/hf/jinja.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <ctime>
#include <map>
#include <utility>
#include <vector>

namespace mfqat::hf {

using json = nlohmann::ordered_json;

namespace {

// ---------------------------------------------------------------- UTF-8 <-> code points
// Invalid bytes map to U+DC80..U+DCFF (Python's surrogateescape) so that they come back unchanged.
std::u32string to_u32(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    char32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    bool ok = n > 0 && i + static_cast<std::size_t>(n) <= s.size();
    for (int k = 1; ok && k < n; ++k) {
      const unsigned char d = static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]);
      if ((d >> 6) != 2) ok = false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if (ok && ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
               (cp >= 0xD800 && cp <= 0xDFFF))) {
      ok = false;
    }
    if (!ok) {
      out.push_back(0xDC00 + c);
      ++i;
      continue;
    }
    out.push_back(cp);
    i += static_cast<std::size_t>(n);
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp >= 0xDC80 && cp <= 0xDCFF) {
    out.push_back(static_cast<char>(cp - 0xDC00));
  } else if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string to_utf8(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (const char32_t c : s) append_utf8(out, c);
  return out;
}

// Python's str.isspace().
bool py_space(char32_t c) {
  return (c >= 9 && c <= 13) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
         c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// str.strip / lstrip / rstrip: `chars` null = whitespace.
std::string py_strip(std::string_view s, const std::u32string* chars, bool left, bool right) {
  const std::u32string u = to_u32(s);
  auto strip_it = [&](char32_t c) { return chars ? chars->find(c) != std::u32string::npos : py_space(c); };
  std::size_t b = 0, e = u.size();
  if (left) {
    while (b < e && strip_it(u[b])) ++b;
  }
  if (right) {
    while (e > b && strip_it(u[e - 1])) --e;
  }
  return to_utf8(std::u32string_view(u).substr(b, e - b));
}

// ---------------------------------------------------------------- Python formatting
std::string py_float(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string sci(buf, r.ptr);  // [-]d[.ddd]e[+-]XX, shortest round trip
  bool neg = sci[0] == '-';
  if (neg) sci.erase(0, 1);
  const auto epos = sci.find('e');
  std::string digits;
  for (std::size_t i = 0; i < epos; ++i) {
    if (sci[i] != '.') digits.push_back(sci[i]);
  }
  const int exp = std::stoi(sci.substr(epos + 1));
  std::string out;
  if (exp >= -5 + 1 && exp < 16) {  // Python's repr: fixed for 1e-4 <= |v| < 1e16
    if (exp < 0) {
      out = "0." + std::string(static_cast<std::size_t>(-exp - 1), '0') + digits;
    } else if (static_cast<std::size_t>(exp) + 1 >= digits.size()) {
      out = digits + std::string(static_cast<std::size_t>(exp) + 1 - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, static_cast<std::size_t>(exp) + 1) + "." + digits.substr(static_cast<std::size_t>(exp) + 1);
    }
  } else {
    out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char e[16];
    std::snprintf(e, sizeof e, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    out += e;
  }
  return neg ? "-" + out : out;
}

std::string py_repr_str(const std::string& s) {
  const bool dq = s.find('\'') != std::string::npos && s.find('"') == std::string::npos;
  const char q = dq ? '"' : '\'';
  std::string out(1, q);
  for (const unsigned char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == static_cast<unsigned char>(q)) out += std::string("\\") + q;
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7F) {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out + q;
}

std::string py_repr(const json& j);
std::string py_str(const json& j) {
  switch (j.type()) {
    case json::value_t::null: return "None";
    case json::value_t::boolean: return j.get<bool>() ? "True" : "False";
    case json::value_t::number_integer: return std::to_string(j.get<std::int64_t>());
    case json::value_t::number_unsigned: return std::to_string(j.get<std::uint64_t>());
    case json::value_t::number_float: return py_float(j.get<double>());
    case json::value_t::string: return j.get<std::string>();
    default: return py_repr(j);
  }
}
std::string py_repr(const json& j) {
  if (j.is_string()) return py_repr_str(j.get<std::string>());
  if (j.is_array()) {
    std::string out = "[";
    for (std::size_t i = 0; i < j.size(); ++i) out += (i ? ", " : "") + py_repr(j[i]);
    return out + "]";
  }
  if (j.is_object()) {
    std::string out = "{";
    bool first = true;
    for (auto it = j.begin(); it != j.end(); ++it) {
      out += (first ? "" : ", ") + py_repr_str(it.key()) + ": " + py_repr(it.value());
      first = false;
    }
    return out + "}";
  }
  return py_str(j);
}

// Python's json.dumps(x, ensure_ascii=False, indent=indent).
void dumps_str(std::string& out, const std::string& s) {
  out.push_back('"');
  for (const unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char b[8];
          std::snprintf(b, sizeof b, "\\u%04x", c);
          out += b;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
}
void dumps(std::string& out, const json& j, int indent, int level) {
  const auto nl = [&](int lv) {
    out.push_back('\n');
    out.append(static_cast<std::size_t>(indent * lv), ' ');
  };
  switch (j.type()) {
    case json::value_t::null: out += "null"; return;
    case json::value_t::boolean: out += j.get<bool>() ? "true" : "false"; return;
    case json::value_t::number_float: {
      const double v = j.get<double>();
      out += std::isnan(v) ? "NaN" : std::isinf(v) ? (v > 0 ? "Infinity" : "-Infinity") : py_float(v);
      return;
    }
    case json::value_t::string: dumps_str(out, j.get<std::string>()); return;
    case json::value_t::array:
    case json::value_t::object: {
      const bool obj = j.is_object();
      if (j.empty()) {
        out += obj ? "{}" : "[]";
        return;
      }
      out.push_back(obj ? '{' : '[');
      bool first = true;
      for (auto it = j.begin(); it != j.end(); ++it) {
        if (!first) out += indent >= 0 ? "," : ", ";
        first = false;
        if (indent >= 0) nl(level + 1);
        if (obj) {
          dumps_str(out, it.key());
          out += ": ";
        }
        dumps(out, it.value(), indent, level + 1);
      }
      if (indent >= 0) nl(level);
      out.push_back(obj ? '}' : ']');
      return;
    }
    default: out += py_str(j); return;
  }
}

// ---------------------------------------------------------------- lexer
enum class T { Data, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, Eof };
struct Tok {
  T t;
  std::string s;  // Data, Name, String (decoded), Op
  std::int64_t i = 0;
  double f = 0;
  std::size_t pos = 0;
};

struct Source {
  std::string text, origin;
  std::string where(std::size_t pos) const {
    std::size_t line = 1, col = 1;
    for (std::size_t k = 0; k < pos && k < text.size(); ++k) {
      if (text[k] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    return origin + ":" + std::to_string(line) + ":" + std::to_string(col);
  }
  [[noreturn]] void fail(std::size_t pos, const std::string& what) const {
    std::string one = what;
    for (char& c : one) {
      if (c == '\n' || c == '\r') c = ' ';
    }
    throw JinjaError(where(pos) + ": " + one);
  }
};

bool ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool name_char(char c) { return name_start(c) || (c >= '0' && c <= '9'); }
bool digit(char c) { return c >= '0' && c <= '9'; }

// Python's "unicode-escape" decoding of a string literal's body (as jinja2's lexer does).
std::string unescape(const Source& src, std::size_t pos, std::string_view body) {
  std::string out;
  for (std::size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (c != '\\' || i + 1 >= body.size()) {
      out.push_back(c);
      continue;
    }
    const char e = body[++i];
    auto hex = [&](int n) {
      std::uint32_t v = 0;
      for (int k = 1; k <= n; ++k) {
        if (i + static_cast<std::size_t>(k) >= body.size()) src.fail(pos, "truncated \\" + std::string(1, e) + " escape in a string");
        const char h = body[i + static_cast<std::size_t>(k)];
        const int d = digit(h) ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10 : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
        if (d < 0) src.fail(pos, "truncated \\" + std::string(1, e) + " escape in a string");
        v = v * 16 + static_cast<std::uint32_t>(d);
      }
      i += static_cast<std::size_t>(n);
      if (v > 0x10FFFF) src.fail(pos, "illegal Unicode character in a string");
      append_utf8(out, v);
    };
    switch (e) {
      case '\n': break;
      case '\\': out.push_back('\\'); break;
      case '\'': out.push_back('\''); break;
      case '"': out.push_back('"'); break;
      case 'a': out.push_back('\a'); break;
      case 'b': out.push_back('\b'); break;
      case 'f': out.push_back('\f'); break;
      case 'n': out.push_back('\n'); break;
      case 'r': out.push_back('\r'); break;
      case 't': out.push_back('\t'); break;
      case 'v': out.push_back('\v'); break;
      case 'x': hex(2); break;
      case 'u': hex(4); break;
      case 'U': hex(8); break;
      case 'N': src.fail(pos, "\\N{...} escapes are not supported");
      default:
        if (e >= '0' && e <= '7') {
          std::uint32_t v = static_cast<std::uint32_t>(e - '0');
          for (int k = 0; k < 2 && i + 1 < body.size() && body[i + 1] >= '0' && body[i + 1] <= '7'; ++k) v = v * 8 + static_cast<std::uint32_t>(body[++i] - '0');
          append_utf8(out, v);
        } else {
          out.push_back('\\');
          out.push_back(e);
        }
    }
  }
  return out;
}

std::vector<Tok> lex(const Source& src) {
  const std::string& s = src.text;
  std::vector<Tok> toks;
  std::size_t p = 0;
  bool line_starting = true;
  while (p <= s.size()) {
    std::size_t q = p;
    while (true) {
      q = s.find('{', q);
      if (q == std::string::npos || q + 1 >= s.size()) {
        q = std::string::npos;
        break;
      }
      if (s[q + 1] == '{' || s[q + 1] == '%' || s[q + 1] == '#') break;
      ++q;
    }
    std::string text = s.substr(p, q == std::string::npos ? std::string::npos : q - p);
    if (q == std::string::npos) {
      if (!text.empty()) toks.push_back({T::Data, text, 0, 0, p});
      break;
    }
    const char kind = s[q + 1];
    const char sign = q + 2 < s.size() && (s[q + 2] == '-' || s[q + 2] == '+') ? s[q + 2] : 0;
    if (sign == '-') {
      text = py_strip(text, nullptr, false, true);
    } else if (sign != '+' && kind != '{') {  // lstrip_blocks: blocks and comments
      const std::size_t nlpos = text.rfind('\n');
      const std::size_t l = nlpos == std::string::npos ? 0 : nlpos + 1;
      if ((l > 0 || line_starting) && l < text.size()) {
        const std::u32string rest = to_u32(std::string_view(text).substr(l));
        if (std::all_of(rest.begin(), rest.end(), py_space)) text.resize(l);
      }
    }
    if (!text.empty()) toks.push_back({T::Data, text, 0, 0, p});
    std::size_t r = q + 2 + (sign ? 1 : 0);
    // After a tag: `-` strips all whitespace, trim_blocks one newline (not after {{ }}).
    auto after_tag = [&](std::size_t end, bool minus, bool plus, bool block) {
      std::size_t e = end;
      if (minus) {
        // Python's \s*: Unicode whitespace.
        while (e < s.size()) {
          const std::u32string c = to_u32(std::string_view(s).substr(e, std::min<std::size_t>(4, s.size() - e)));
          if (c.empty() || !py_space(c[0])) break;
          std::string one;
          append_utf8(one, c[0]);
          e += one.size();
        }
      } else if (block && !plus && e < s.size() && s[e] == '\n') {
        ++e;
      }
      line_starting = e > end && s[e - 1] == '\n';
      return e;
    };
    if (kind == '#') {
      const std::size_t end = s.find("#}", r);
      if (end == std::string::npos) src.fail(q, "missing end of comment tag");
      const bool minus = end > r && s[end - 1] == '-';
      const bool plus = end > r && s[end - 1] == '+';
      p = after_tag(end + 2, minus, plus, true);
      continue;
    }
    const bool var = kind == '{';
    toks.push_back({var ? T::VarBegin : T::BlockBegin, "", 0, 0, q});
    // Expression tokens up to the matching end.
    while (true) {
      while (r < s.size() && ascii_space(s[r])) ++r;
      if (r >= s.size()) src.fail(q, var ? "unexpected end of template, expected '}}'" : "unexpected end of template, expected '%}'");
      const char c = s[r];
      // the end of the tag
      const bool minus = c == '-' || c == '+';
      const std::size_t e0 = minus ? r + 1 : r;
      if (e0 + 1 < s.size() && ((s[e0] == '}' && s[e0 + 1] == '}') || (s[e0] == '%' && s[e0 + 1] == '}'))) {
        const bool is_var_end = s[e0] == '}';
        if (is_var_end == var) {
          toks.push_back({var ? T::VarEnd : T::BlockEnd, "", 0, 0, r});
          p = after_tag(e0 + 2, c == '-', c == '+', !var);
          break;
        }
        if (!(is_var_end && !minus)) src.fail(r, std::string("unexpected '") + (is_var_end ? "}}" : "%}") + "'");
      }
      if (c == '\'' || c == '"') {
        std::size_t k = r + 1;
        while (k < s.size() && s[k] != c) k += s[k] == '\\' ? 2 : 1;
        if (k >= s.size()) src.fail(r, "unterminated string");
        toks.push_back({T::String, unescape(src, r, std::string_view(s).substr(r + 1, k - r - 1)), 0, 0, r});
        r = k + 1;
        continue;
      }
      if (digit(c)) {
        std::size_t k = r;
        std::string digits;
        while (k < s.size() && (digit(s[k]) || (s[k] == '_' && k + 1 < s.size() && digit(s[k + 1])))) {
          if (s[k] != '_') digits.push_back(s[k]);
          ++k;
        }
        const bool after_dot = !toks.empty() && toks.back().t == T::Op && toks.back().s == ".";
        bool is_float = false;
        if (!after_dot && k + 1 < s.size() && s[k] == '.' && digit(s[k + 1])) {
          is_float = true;
          digits.push_back('.');
          ++k;
          while (k < s.size() && (digit(s[k]) || (s[k] == '_' && k + 1 < s.size() && digit(s[k + 1])))) {
            if (s[k] != '_') digits.push_back(s[k]);
            ++k;
          }
        }
        if (!after_dot && k < s.size() && (s[k] == 'e' || s[k] == 'E')) {
          std::size_t m = k + 1;
          if (m < s.size() && (s[m] == '+' || s[m] == '-')) ++m;
          if (m < s.size() && digit(s[m])) {
            is_float = true;
            digits.append(s, k, m - k);
            k = m;
            while (k < s.size() && digit(s[k])) digits.push_back(s[k++]);
          }
        }
        Tok t{is_float ? T::Float : T::Int, digits, 0, 0, r};
        if (is_float) {
          t.f = std::strtod(digits.c_str(), nullptr);
        } else {
          const auto res = std::from_chars(digits.data(), digits.data() + digits.size(), t.i);
          if (res.ec != std::errc()) src.fail(r, "integer literal out of range");
        }
        toks.push_back(t);
        r = k;
        continue;
      }
      if (name_start(c)) {
        std::size_t k = r;
        while (k < s.size() && name_char(s[k])) ++k;
        toks.push_back({T::Name, s.substr(r, k - r), 0, 0, r});
        r = k;
        continue;
      }
      static const char* ops2[] = {"==", "!=", ">=", "<=", "//", "**"};
      bool two = false;
      for (const char* o : ops2) {
        if (s.compare(r, 2, o) == 0) {
          toks.push_back({T::Op, o, 0, 0, r});
          r += 2;
          two = true;
          break;
        }
      }
      if (two) continue;
      if (std::string_view("+-*/%~<>=.,:|()[]{}").find(c) != std::string_view::npos) {
        toks.push_back({T::Op, std::string(1, c), 0, 0, r});
        ++r;
        continue;
      }
      src.fail(r, std::string("unexpected character '") + c + "'");
    }
  }
  toks.push_back({T::Eof, "", 0, 0, s.size()});
  return toks;
}

// ---------------------------------------------------------------- syntax tree
struct Expr;
using ExprP = std::unique_ptr<Expr>;
struct Expr {
  enum K { Const, Name, List, Dict, Attr, Item, Slice, Call, Filter, Test, Neg, Pos, Not, Bin, And, Or, Cond } k;
  std::size_t pos = 0;
  json value;        // Const
  std::string name;  // Name, Attr, Call (global), Filter, Test, Bin (operator)
  bool negate = false;  // Test: `is not`
  std::vector<ExprP> args;  // operands, elements, call/filter/test arguments (first: the subject)
  std::vector<std::pair<std::string, ExprP>> kwargs;
};

struct Stmt;
using Body = std::vector<std::unique_ptr<Stmt>>;
struct Stmt {
  enum K { Text, Print, If, For, Set, SetBlock, Break, Continue, Generation } k;
  std::size_t pos = 0;
  std::string text;  // Text; Set/SetBlock: the name
  std::string attr;  // Set: ns.attr
  std::vector<std::string> targets;  // For
  ExprP expr;   // Print, For (iterable), Set
  ExprP cond;   // For's filter
  std::vector<std::pair<ExprP, Body>> branches;  // If
  Body body, else_body;
};

const std::vector<std::string>& known_filters() {
  static const std::vector<std::string> f = {"trim", "tojson", "length", "count", "default", "d", "upper", "lower", "capitalize",
                                             "title", "string", "int", "float", "join", "first", "last", "list", "replace",
                                             "items", "reverse", "abs", "selectattr", "rejectattr", "map", "safe", "unique", "sum",
                                             "min", "max", "indent", "select", "reject", "dictsort", "round", "wordcount"};
  return f;
}
const std::vector<std::string>& known_tests() {
  static const std::vector<std::string> t = {"defined", "undefined", "none", "boolean", "true", "false", "integer", "float",
                                             "number", "string", "mapping", "iterable", "sequence", "odd", "even", "divisibleby",
                                             "eq", "equalto", "==", "ne", "!=", "lt", "<", "lessthan", "gt", ">", "greaterthan",
                                             "le", "<=", "ge", ">=", "in", "lower", "upper", "callable", "sameas"};
  return t;
}

class Parser {
 public:
  Parser(const Source& src, std::vector<Tok> toks) : src_(src), t_(std::move(toks)) {}

  Body parse_template() {
    std::string end;
    Body b = parse_body({}, &end);
    return b;
  }

 private:
  const Source& src_;
  std::vector<Tok> t_;
  std::size_t i_ = 0;
  int depth_ = 0;

  const Tok& cur() const { return t_[i_]; }
  const Tok& peek(std::size_t n = 1) const { return t_[std::min(i_ + n, t_.size() - 1)]; }
  bool is_op(const char* o) const { return cur().t == T::Op && cur().s == o; }
  bool is_name(const char* n) const { return cur().t == T::Name && cur().s == n; }
  [[noreturn]] void fail(const std::string& what) const { src_.fail(cur().pos, what); }
  std::string describe(const Tok& t) const {
    switch (t.t) {
      case T::Eof: return "end of template";
      case T::VarEnd: return "'}}'";
      case T::BlockEnd: return "'%}'";
      case T::Data: return "text";
      case T::String: return "a string";
      case T::Int:
      case T::Float: return "a number";
      default: return "'" + t.s + "'";
    }
  }
  void expect_op(const char* o) {
    if (!is_op(o)) fail(std::string("expected '") + o + "', got " + describe(cur()));
    ++i_;
  }
  std::string expect_name() {
    if (cur().t != T::Name) fail("expected a name, got " + describe(cur()));
    return t_[i_++].s;
  }
  void expect_block_end() {
    if (cur().t != T::BlockEnd) fail("expected '%}', got " + describe(cur()));
    ++i_;
  }
  struct DepthGuard {
    Parser& p;
    explicit DepthGuard(Parser& pp) : p(pp) {
      if (++p.depth_ > 200) p.fail("nested too deeply");
    }
    ~DepthGuard() { --p.depth_; }
  };

  // Statements until one of `ends` (a block tag name); *end = the tag found ("" at Eof).
  Body parse_body(const std::vector<std::string>& ends, std::string* end) {
    DepthGuard g(*this);
    Body body;
    while (true) {
      const Tok& t = cur();
      if (t.t == T::Eof) {
        if (!ends.empty()) fail("unexpected end of template, expected one of: " + join(ends));
        *end = "";
        return body;
      }
      if (t.t == T::Data) {
        auto s = std::make_unique<Stmt>();
        s->k = Stmt::Text;
        s->pos = t.pos;
        s->text = t.s;
        body.push_back(std::move(s));
        ++i_;
        continue;
      }
      if (t.t == T::VarBegin) {
        auto s = std::make_unique<Stmt>();
        s->k = Stmt::Print;
        s->pos = t.pos;
        ++i_;
        s->expr = parse_tuple_expr();
        if (cur().t != T::VarEnd) fail("expected '}}', got " + describe(cur()));
        ++i_;
        body.push_back(std::move(s));
        continue;
      }
      if (t.t != T::BlockBegin) fail("unexpected " + describe(t));
      const std::size_t tag_pos = t.pos;
      ++i_;
      if (cur().t != T::Name) fail("expected a tag name, got " + describe(cur()));
      const std::string tag = cur().s;
      if (std::find(ends.begin(), ends.end(), tag) != ends.end()) {
        ++i_;
        *end = tag;
        return body;
      }
      body.push_back(parse_statement(tag, tag_pos));
    }
  }
  static std::string join(const std::vector<std::string>& v) {
    std::string out;
    for (const auto& s : v) out += (out.empty() ? "'" : ", '") + s + "'";
    return out;
  }

  std::unique_ptr<Stmt> parse_statement(const std::string& tag, std::size_t pos) {
    auto s = std::make_unique<Stmt>();
    s->pos = pos;
    ++i_;  // the tag name
    if (tag == "if") {
      s->k = Stmt::If;
      ExprP c = parse_tuple_expr();
      expect_block_end();
      while (true) {
        std::string end;
        Body b = parse_body({"elif", "else", "endif"}, &end);
        s->branches.emplace_back(std::move(c), std::move(b));
        if (end == "elif") {
          c = parse_tuple_expr();
          expect_block_end();
          continue;
        }
        if (end == "else") {
          expect_block_end();
          s->else_body = parse_body({"endif"}, &end);
        }
        expect_block_end();
        return s;
      }
    }
    if (tag == "for") {
      s->k = Stmt::For;
      s->targets.push_back(expect_name());
      while (is_op(",")) {
        ++i_;
        s->targets.push_back(expect_name());
      }
      if (!is_name("in")) fail("expected 'in', got " + describe(cur()));
      ++i_;
      s->expr = parse_tuple_expr(/*with_condexpr=*/false);
      if (is_name("if")) {
        ++i_;
        s->cond = parse_expression();
      }
      if (is_name("recursive")) fail("recursive loops are not supported");
      expect_block_end();
      std::string end;
      s->body = parse_body({"endfor", "else"}, &end);
      if (end == "else") {
        expect_block_end();
        s->else_body = parse_body({"endfor"}, &end);
      }
      expect_block_end();
      return s;
    }
    if (tag == "set") {
      s->text = expect_name();
      if (is_op(".")) {
        ++i_;
        s->attr = expect_name();
      }
      if (is_op("=")) {
        ++i_;
        s->k = Stmt::Set;
        s->expr = parse_tuple_expr();
        expect_block_end();
        return s;
      }
      if (!s->attr.empty()) fail("expected '=', got " + describe(cur()));
      if (is_op(",")) fail("assignment to several names is not supported");
      s->k = Stmt::SetBlock;
      expect_block_end();
      std::string end;
      s->body = parse_body({"endset"}, &end);
      expect_block_end();
      return s;
    }
    if (tag == "break" || tag == "continue") {
      s->k = tag == "break" ? Stmt::Break : Stmt::Continue;
      expect_block_end();
      return s;
    }
    if (tag == "generation") {  // transformers' extension: marks assistant text; renders its body
      s->k = Stmt::Generation;
      expect_block_end();
      std::string end;
      s->body = parse_body({"endgeneration"}, &end);
      expect_block_end();
      return s;
    }
    i_ -= 1;
    fail("unknown or unsupported tag '" + tag + "'");
  }

  // ---- expressions (jinja2's precedence)
  ExprP make(Expr::K k, std::size_t pos) {
    auto e = std::make_unique<Expr>();
    e->k = k;
    e->pos = pos;
    return e;
  }
  // A bare tuple `a, b` (print, set, for iterables) becomes a list.
  ExprP parse_tuple_expr(bool with_condexpr = true) {
    const std::size_t pos = cur().pos;
    ExprP first = with_condexpr ? parse_expression() : parse_or();
    if (!is_op(",")) return first;
    auto list = make(Expr::List, pos);
    list->args.push_back(std::move(first));
    while (is_op(",")) {
      ++i_;
      if (cur().t == T::BlockEnd || cur().t == T::VarEnd || is_name("if")) break;
      list->args.push_back(with_condexpr ? parse_expression() : parse_or());
    }
    return list;
  }
  ExprP parse_expression() {
    DepthGuard g(*this);
    ExprP e = parse_or();
    while (is_name("if")) {
      auto c = make(Expr::Cond, cur().pos);
      ++i_;
      ExprP test = parse_or();
      ExprP other;
      if (is_name("else")) {
        ++i_;
        other = parse_expression();
      }
      c->args.push_back(std::move(test));
      c->args.push_back(std::move(e));
      if (other) c->args.push_back(std::move(other));
      e = std::move(c);
    }
    return e;
  }
  ExprP parse_or() {
    ExprP l = parse_and();
    while (is_name("or")) {
      auto e = make(Expr::Or, cur().pos);
      ++i_;
      e->args.push_back(std::move(l));
      e->args.push_back(parse_and());
      l = std::move(e);
    }
    return l;
  }
  ExprP parse_and() {
    ExprP l = parse_not();
    while (is_name("and")) {
      auto e = make(Expr::And, cur().pos);
      ++i_;
      e->args.push_back(std::move(l));
      e->args.push_back(parse_not());
      l = std::move(e);
    }
    return l;
  }
  ExprP parse_not() {
    if (is_name("not")) {
      DepthGuard g(*this);
      auto e = make(Expr::Not, cur().pos);
      ++i_;
      e->args.push_back(parse_not());
      return e;
    }
    return parse_compare();
  }
  ExprP parse_compare() {
    ExprP l = parse_math1();
    while (true) {
      std::string op;
      const std::size_t pos = cur().pos;
      if (cur().t == T::Op && (cur().s == "==" || cur().s == "!=" || cur().s == "<" || cur().s == ">" || cur().s == "<=" || cur().s == ">=")) {
        op = cur().s;
        ++i_;
      } else if (is_name("in")) {
        op = "in";
        ++i_;
      } else if (is_name("not") && peek().t == T::Name && peek().s == "in") {
        op = "not in";
        i_ += 2;
      } else {
        return l;
      }
      auto e = make(Expr::Bin, pos);
      e->name = op;
      e->args.push_back(std::move(l));
      e->args.push_back(parse_math1());
      l = std::move(e);
    }
  }
  ExprP binary_loop(ExprP (Parser::*next)(), std::initializer_list<const char*> ops) {
    ExprP l = (this->*next)();
    while (true) {
      bool hit = false;
      for (const char* o : ops) {
        if (is_op(o)) {
          auto e = make(Expr::Bin, cur().pos);
          e->name = std::string(o);
          ++i_;
          e->args.push_back(std::move(l));
          e->args.push_back((this->*next)());
          l = std::move(e);
          hit = true;
          break;
        }
      }
      if (!hit) return l;
    }
  }
  ExprP parse_math1() { return binary_loop(&Parser::parse_concat, {"+", "-"}); }
  ExprP parse_concat() { return binary_loop(&Parser::parse_math2, {"~"}); }
  ExprP parse_math2() { return binary_loop(&Parser::parse_pow, {"*", "/", "//", "%"}); }
  ExprP parse_pow() { return binary_loop(&Parser::parse_unary_f, {"**"}); }
  ExprP parse_unary_f() { return parse_unary(true); }
  ExprP parse_unary(bool with_filter) {
    DepthGuard g(*this);
    ExprP e;
    if (is_op("-") || is_op("+")) {
      e = make(is_op("-") ? Expr::Neg : Expr::Pos, cur().pos);
      ++i_;
      e->args.push_back(parse_unary(false));
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filter_expr(std::move(e));
    return e;
  }
  ExprP parse_primary() {
    const Tok& t = cur();
    if (t.t == T::Name) {
      ++i_;
      if (t.s == "true" || t.s == "True") return constant(json(true), t.pos);
      if (t.s == "false" || t.s == "False") return constant(json(false), t.pos);
      if (t.s == "none" || t.s == "None") return constant(json(nullptr), t.pos);
      auto e = make(Expr::Name, t.pos);
      e->name = t.s;
      return e;
    }
    if (t.t == T::String) {
      std::string s = t.s;
      const std::size_t pos = t.pos;
      ++i_;
      while (cur().t == T::String) s += t_[i_++].s;  // adjacent literals concatenate
      return constant(json(s), pos);
    }
    if (t.t == T::Int) {
      ++i_;
      return constant(json(t.i), t.pos);
    }
    if (t.t == T::Float) {
      ++i_;
      return constant(json(t.f), t.pos);
    }
    if (is_op("(")) {
      const std::size_t pos = t.pos;
      ++i_;
      if (is_op(")")) {
        ++i_;
        return make(Expr::List, pos);
      }
      ExprP e = parse_expression();
      if (is_op(",")) {  // a tuple: a list
        auto list = make(Expr::List, pos);
        list->args.push_back(std::move(e));
        while (is_op(",")) {
          ++i_;
          if (is_op(")")) break;
          list->args.push_back(parse_expression());
        }
        e = std::move(list);
      }
      expect_op(")");
      return e;
    }
    if (is_op("[")) {
      auto e = make(Expr::List, t.pos);
      ++i_;
      while (!is_op("]")) {
        if (!e->args.empty()) expect_op(",");
        if (is_op("]")) break;
        e->args.push_back(parse_expression());
      }
      ++i_;
      return e;
    }
    if (is_op("{")) {
      auto e = make(Expr::Dict, t.pos);
      ++i_;
      while (!is_op("}")) {
        if (!e->args.empty()) expect_op(",");
        if (is_op("}")) break;
        e->args.push_back(parse_expression());
        expect_op(":");
        e->args.push_back(parse_expression());
      }
      ++i_;
      return e;
    }
    fail("unexpected " + describe(t));
  }
  ExprP constant(json v, std::size_t pos) {
    auto e = make(Expr::Const, pos);
    e->value = std::move(v);
    return e;
  }
  ExprP parse_postfix(ExprP e) {
    while (true) {
      if (is_op(".")) {
        const std::size_t pos = cur().pos;
        ++i_;
        if (cur().t == T::Int) {
          auto it = make(Expr::Item, pos);
          it->args.push_back(std::move(e));
          it->args.push_back(constant(json(cur().i), cur().pos));
          ++i_;
          e = std::move(it);
          continue;
        }
        auto a = make(Expr::Attr, pos);
        a->name = expect_name();
        a->args.push_back(std::move(e));
        e = std::move(a);
      } else if (is_op("[")) {
        const std::size_t pos = cur().pos;
        ++i_;
        ExprP parts[3];
        bool slice = false;
        int n = 0;
        while (true) {
          if (!is_op(":") && !is_op("]")) parts[n] = parse_expression();
          if (is_op(":")) {
            slice = true;
            if (++n > 2) fail("too many ':' in a slice");
            ++i_;
            continue;
          }
          break;
        }
        expect_op("]");
        auto it = make(slice ? Expr::Slice : Expr::Item, pos);
        it->args.push_back(std::move(e));
        if (slice) {
          for (auto& p : parts) it->args.push_back(std::move(p));  // null for an omitted part
        } else {
          if (!parts[0]) src_.fail(pos, "expected a subscript");
          it->args.push_back(std::move(parts[0]));
        }
        e = std::move(it);
      } else if (is_op("(")) {
        auto c = make(Expr::Call, cur().pos);
        c->args.push_back(std::move(e));
        parse_call_args(*c);
        e = std::move(c);
      } else {
        return e;
      }
    }
  }
  void parse_call_args(Expr& c) {
    expect_op("(");
    bool first = true;
    while (!is_op(")")) {
      if (!first) expect_op(",");
      first = false;
      if (is_op(")")) break;
      if (cur().t == T::Name && peek().t == T::Op && peek().s == "=") {
        std::string k = cur().s;
        i_ += 2;
        c.kwargs.emplace_back(std::move(k), parse_expression());
      } else {
        if (!c.kwargs.empty()) fail("a positional argument after keyword arguments");
        c.args.push_back(parse_expression());
      }
    }
    ++i_;
  }
  ExprP parse_filter_expr(ExprP e) {
    while (true) {
      if (is_op("|")) {
        ++i_;
        auto f = make(Expr::Filter, cur().pos);
        f->name = expect_name();
        if (std::find(known_filters().begin(), known_filters().end(), f->name) == known_filters().end()) {
          src_.fail(f->pos, "no filter named '" + f->name + "'");
        }
        f->args.push_back(std::move(e));
        if (is_op("(")) parse_call_args(*f);
        e = std::move(f);
      } else if (is_name("is")) {
        auto t = make(Expr::Test, cur().pos);
        ++i_;
        if (is_name("not")) {
          t->negate = true;
          ++i_;
        }
        if (cur().t == T::Name) {
          t->name = t_[i_++].s;
        } else if (cur().t == T::Op && (cur().s == "==" || cur().s == "!=" || cur().s == "<" || cur().s == ">" || cur().s == "<=" || cur().s == ">=")) {
          t->name = t_[i_++].s;
        } else {
          fail("expected a test name, got " + describe(cur()));
        }
        if (std::find(known_tests().begin(), known_tests().end(), t->name) == known_tests().end()) {
          src_.fail(t->pos, "no test named '" + t->name + "'");
        }
        t->args.push_back(std::move(e));
        if (is_op("(")) {
          parse_call_args(*t);
        } else if ((cur().t == T::Name || cur().t == T::String || cur().t == T::Int || cur().t == T::Float || is_op("[") || is_op("{")) &&
                   !is_name("else") && !is_name("or") && !is_name("and") && !is_name("if") && !is_name("in") && !is_name("not") &&
                   !is_name("is") && !is_name("recursive")) {
          t->args.push_back(parse_postfix(parse_primary()));
        }
        e = std::move(t);
      } else if (is_op("(")) {
        auto c = make(Expr::Call, cur().pos);
        c->args.push_back(std::move(e));
        parse_call_args(*c);
        e = std::move(c);
      } else {
        return e;
      }
    }
  }
};

// ---------------------------------------------------------------- values
struct Value {
  enum K : std::uint8_t { Undef, Json, Ns } k = Undef;
  json j;                    // Json: the value, unless `ref` points at it
  const json* ref = nullptr;  // a value inside the render's context (not copied: it outlives the render)
  std::shared_ptr<json> ns;  // a namespace's attributes (shared: `set ns.x` changes every copy)
  std::string hint;          // Undef: what is undefined, for errors
  static Value undef(std::string h) {
    Value v;
    v.hint = std::move(h);
    return v;
  }
  static Value of(json x) {
    Value v;
    v.k = Json;
    v.j = std::move(x);
    return v;
  }
  static Value ref_to(const json& x) {
    Value v;
    v.k = Json;
    v.ref = &x;
    return v;
  }
  const json& J() const { return ref ? *ref : j; }
  // A member or element of this value: borrowed when this one is, else copied.
  Value child(const json& c) const { return ref ? ref_to(c) : of(c); }
};

bool truthy(const Value& v) {
  if (v.k == Value::Undef) return false;
  if (v.k == Value::Ns) return true;
  const json& j = v.J();
  switch (j.type()) {
    case json::value_t::null: return false;
    case json::value_t::boolean: return j.get<bool>();
    case json::value_t::number_integer: return j.get<std::int64_t>() != 0;
    case json::value_t::number_unsigned: return j.get<std::uint64_t>() != 0;
    case json::value_t::number_float: return j.get<double>() != 0;
    case json::value_t::string: return !j.get_ref<const std::string&>().empty();
    case json::value_t::array:
    case json::value_t::object: return !j.empty();
    default: return true;
  }
}

std::string to_str(const Value& v) {
  if (v.k == Value::Undef) return "";
  if (v.k == Value::Ns) return "<Namespace " + py_repr(*v.ns) + ">";
  return py_str(v.J());
}

bool is_int(const json& j) { return j.is_number_integer(); }
bool is_num(const json& j) { return j.is_number() || j.is_boolean(); }
double num(const json& j) { return j.is_boolean() ? (j.get<bool>() ? 1.0 : 0.0) : j.get<double>(); }
std::int64_t inum(const json& j) { return j.is_boolean() ? (j.get<bool>() ? 1 : 0) : j.get<std::int64_t>(); }

bool py_eq(const json& a, const json& b) {
  if (is_num(a) && is_num(b)) {
    if ((is_int(a) || a.is_boolean()) && (is_int(b) || b.is_boolean())) return inum(a) == inum(b);
    return num(a) == num(b);
  }
  if (a.type() != b.type()) return false;
  if (a.is_array()) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (!py_eq(a[i], b[i])) return false;
    }
    return true;
  }
  if (a.is_object()) {
    if (a.size() != b.size()) return false;
    for (auto it = a.begin(); it != a.end(); ++it) {
      const auto f = b.find(it.key());
      if (f == b.end() || !py_eq(it.value(), *f)) return false;
    }
    return true;
  }
  return a == b;
}
bool val_eq(const Value& a, const Value& b) {
  if (a.k != b.k) return false;
  if (a.k == Value::Undef) return true;
  if (a.k == Value::Ns) return a.ns == b.ns;
  return py_eq(a.J(), b.J());
}

struct Loop {};

class Renderer {
 public:
  Renderer(const Source& src, const JinjaLimits& lim, const json& ctx) : src_(src), lim_(lim), ctx_(ctx) { scopes_.emplace_back(); }

  void run(const Body& body, std::string& out) {
    if (exec(body, out) != Flow::Normal) src_.fail(0, "break or continue outside a loop");
  }

 private:
  enum class Flow { Normal, Break, Continue };
  const Source& src_;
  const JinjaLimits& lim_;
  const json& ctx_;
  std::vector<std::map<std::string, Value>> scopes_;
  std::size_t steps_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;

  [[noreturn]] void fail(std::size_t pos, const std::string& what) const { src_.fail(pos, what); }
  void step(std::size_t pos) {
    if (++steps_ > lim_.max_steps) fail(pos, "the template ran past " + std::to_string(lim_.max_steps) + " steps");
  }
  void emit(std::string& out, std::string_view s, std::size_t pos) {
    if (out.size() + s.size() > lim_.max_output) fail(pos, "the output is longer than " + std::to_string(lim_.max_output) + " bytes");
    out.append(s);
  }

  Value lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      const auto f = it->find(name);
      if (f != it->end()) return f->second;
    }
    if (ctx_.is_object()) {
      const auto f = ctx_.find(name);
      if (f != ctx_.end()) return Value::ref_to(*f);
    }
    return Value::undef("'" + name + "' is undefined");
  }

  Flow exec(const Body& body, std::string& out) {
    for (const auto& s : body) {
      const Flow f = exec(*s, out);
      if (f != Flow::Normal) return f;
    }
    return Flow::Normal;
  }

  Flow exec(const Stmt& s, std::string& out) {
    step(s.pos);
    struct Guard {
      int& d;
      Guard(int& dd, const Renderer& r, std::size_t pos) : d(dd) {
        if (++d > r.lim_.max_depth) r.fail(pos, "nested too deeply");
      }
      ~Guard() { --d; }
    } g(depth_, *this, s.pos);
    switch (s.k) {
      case Stmt::Text: emit(out, s.text, s.pos); return Flow::Normal;
      case Stmt::Print: emit(out, to_str(eval(*s.expr)), s.pos); return Flow::Normal;
      case Stmt::If:
        for (const auto& [c, b] : s.branches) {
          if (truthy(eval(*c))) return exec(b, out);
        }
        return exec(s.else_body, out);
      case Stmt::Set: {
        Value v = eval(*s.expr);
        if (s.attr.empty()) {
          scopes_.back()[s.text] = std::move(v);
          return Flow::Normal;
        }
        const Value ns = lookup(s.text);
        if (ns.k != Value::Ns) fail(s.pos, "cannot assign attribute on non-namespace object '" + s.text + "'");
        if (v.k == Value::Ns) fail(s.pos, "a namespace inside a namespace is not supported");
        (*ns.ns)[s.attr] = v.k == Value::Undef ? json() : v.J();
        if (v.k == Value::Undef) fail(s.pos, v.hint);
        return Flow::Normal;
      }
      case Stmt::SetBlock: {
        std::string captured;
        scopes_.emplace_back();
        const Flow f = exec(s.body, captured);
        scopes_.pop_back();
        scopes_.back()[s.text] = Value::of(json(captured));
        return f;
      }
      case Stmt::Break: return loop_depth_ > 0 ? Flow::Break : (fail(s.pos, "'break' outside a loop"), Flow::Normal);
      case Stmt::Continue: return loop_depth_ > 0 ? Flow::Continue : (fail(s.pos, "'continue' outside a loop"), Flow::Normal);
      case Stmt::Generation: return exec(s.body, out);
      case Stmt::For: return exec_for(s, out);
    }
    return Flow::Normal;
  }

  std::vector<json> iterate(const Value& v, std::size_t pos) {
    if (v.k == Value::Undef) return {};
    if (v.k == Value::Ns) fail(pos, "a namespace is not iterable");
    const json& j = v.J();
    std::vector<json> items;
    if (j.is_array()) {
      items.assign(j.begin(), j.end());
    } else if (j.is_object()) {
      for (auto it = j.begin(); it != j.end(); ++it) items.emplace_back(it.key());
    } else if (j.is_string()) {
      for (const char32_t c : to_u32(j.get_ref<const std::string&>())) items.emplace_back(to_utf8(std::u32string(1, c)));
    } else {
      fail(pos, "'" + type_name(j) + "' object is not iterable");
    }
    return items;
  }

  static std::string type_name(const json& j) {
    switch (j.type()) {
      case json::value_t::null: return "NoneType";
      case json::value_t::boolean: return "bool";
      case json::value_t::number_integer:
      case json::value_t::number_unsigned: return "int";
      case json::value_t::number_float: return "float";
      case json::value_t::string: return "str";
      case json::value_t::array: return "list";
      case json::value_t::object: return "dict";
      default: return "object";
    }
  }

  void bind_targets(const Stmt& s, std::map<std::string, Value>& scope, const json& item) {
    if (s.targets.size() == 1) {
      scope[s.targets[0]] = Value::of(item);
      return;
    }
    std::vector<json> parts;
    if (item.is_array()) parts.assign(item.begin(), item.end());
    else if (item.is_string()) {
      for (const char32_t c : to_u32(item.get_ref<const std::string&>())) parts.emplace_back(to_utf8(std::u32string(1, c)));
    } else if (item.is_object()) {
      for (auto it = item.begin(); it != item.end(); ++it) parts.emplace_back(it.key());
    } else {
      fail(s.pos, "cannot unpack a non-iterable " + type_name(item));
    }
    if (parts.size() != s.targets.size()) {
      fail(s.pos, "cannot unpack " + std::to_string(parts.size()) + " values into " + std::to_string(s.targets.size()) + " names");
    }
    for (std::size_t i = 0; i < parts.size(); ++i) scope[s.targets[i]] = Value::of(parts[i]);
  }

  Flow exec_for(const Stmt& s, std::string& out) {
    std::vector<json> items = iterate(eval(*s.expr), s.expr->pos);
    if (s.cond) {  // `for x in xs if cond`: filtered before the loop variable counts
      std::vector<json> kept;
      for (const json& it : items) {
        scopes_.emplace_back();
        bind_targets(s, scopes_.back(), it);
        const bool keep = truthy(eval(*s.cond));
        scopes_.pop_back();
        if (keep) kept.push_back(it);
      }
      items = std::move(kept);
    }
    if (items.empty()) return exec(s.else_body, out);
    const std::size_t n = items.size();
    ++loop_depth_;
    for (std::size_t i = 0; i < n; ++i) {
      step(s.pos);
      scopes_.emplace_back();
      auto& scope = scopes_.back();
      json loop = json::object();
      loop["index"] = i + 1;
      loop["index0"] = i;
      loop["revindex"] = n - i;
      loop["revindex0"] = n - i - 1;
      loop["first"] = i == 0;
      loop["last"] = i + 1 == n;
      loop["length"] = n;
      loop["depth"] = 1;
      loop["depth0"] = 0;
      if (i > 0) loop["previtem"] = items[i - 1];
      if (i + 1 < n) loop["nextitem"] = items[i + 1];
      scope["loop"] = Value::of(std::move(loop));
      bind_targets(s, scope, items[i]);
      const Flow f = exec(s.body, out);
      scopes_.pop_back();
      if (f == Flow::Break) break;
    }
    --loop_depth_;
    return Flow::Normal;
  }

  // ---- expressions
  const json& need(const Value& v, std::size_t pos) const {
    if (v.k == Value::Undef) fail(pos, v.hint);
    if (v.k == Value::Ns) fail(pos, "a namespace cannot be used here");
    return v.J();
  }

  Value getattr(const Value& obj, const std::string& name, std::size_t pos) {
    if (obj.k == Value::Undef) fail(pos, obj.hint);
    if (obj.k == Value::Ns) {
      const auto f = obj.ns->find(name);
      if (f != obj.ns->end()) return Value::of(*f);
      return Value::undef("'Namespace' object has no attribute '" + name + "'");
    }
    if (obj.J().is_object()) {
      const auto f = obj.J().find(name);
      if (f != obj.J().end()) return obj.child(*f);
    }
    return Value::undef("'" + type_name(obj.J()) + " object' has no attribute '" + name + "'");
  }

  static std::int64_t norm_index(std::int64_t i, std::size_t n) { return i < 0 ? i + static_cast<std::int64_t>(n) : i; }

  Value getitem(const Value& obj, const Value& key, std::size_t pos) {
    if (obj.k == Value::Undef) fail(pos, obj.hint);
    if (obj.k == Value::Ns) {
      if (key.k == Value::Json && key.J().is_string()) return getattr(obj, key.J().get<std::string>(), pos);
      return Value::undef("'Namespace' object has no item");
    }
    if (key.k != Value::Json) return Value::undef("no such item");
    const json& o = obj.J();
    const json& k = key.J();
    if (o.is_object() && k.is_string()) {
      const auto f = o.find(k.get<std::string>());
      if (f != o.end()) return obj.child(*f);
      return Value::undef("'dict object' has no attribute '" + k.get<std::string>() + "'");
    }
    if ((o.is_array() || o.is_string()) && (is_int(k) || k.is_boolean())) {
      if (o.is_array()) {
        const std::int64_t i = norm_index(inum(k), o.size());
        if (i >= 0 && i < static_cast<std::int64_t>(o.size())) return obj.child(o[static_cast<std::size_t>(i)]);
        return Value::undef("'list object' has no element " + std::to_string(inum(k)));
      }
      const std::u32string u = to_u32(o.get_ref<const std::string&>());
      const std::int64_t i = norm_index(inum(k), u.size());
      if (i >= 0 && i < static_cast<std::int64_t>(u.size())) return Value::of(json(to_utf8(u.substr(static_cast<std::size_t>(i), 1))));
      return Value::undef("'str object' has no element " + std::to_string(inum(k)));
    }
    return Value::undef("'" + type_name(o) + " object' has no element " + py_str(k));
  }

  // Python slice semantics.
  template <class Seq>
  Seq slice_seq(const Seq& s, const Value* a, const Value* b, const Value* c, std::size_t pos) {
    const std::int64_t n = static_cast<std::int64_t>(s.size());
    auto opt = [&](const Value* v) -> std::optional<std::int64_t> {
      if (!v || (v->k == Value::Json && v->j.is_null())) return std::nullopt;
      const json& j = need(*v, pos);
      if (!is_int(j) && !j.is_boolean()) fail(pos, "slice indices must be integers or None");
      return inum(j);
    };
    const auto st = opt(c);
    const std::int64_t stp = st.value_or(1);
    if (stp == 0) fail(pos, "slice step cannot be zero");
    auto clamp = [&](std::optional<std::int64_t> x, std::int64_t dflt) {
      if (!x) return dflt;
      std::int64_t v = *x;
      if (v < 0) v += n;
      if (stp > 0) return std::clamp<std::int64_t>(v, 0, n);
      return std::clamp<std::int64_t>(v, -1, n - 1);
    };
    const std::int64_t lo = clamp(opt(a), stp > 0 ? 0 : n - 1), hi = clamp(opt(b), stp > 0 ? n : -1);
    Seq out;
    if (stp > 0) {
      for (std::int64_t i = lo; i < hi; i += stp) out.push_back(s[static_cast<std::size_t>(i)]);
    } else {
      for (std::int64_t i = lo; i > hi; i += stp) out.push_back(s[static_cast<std::size_t>(i)]);
    }
    return out;
  }

  Value eval(const Expr& e) {
    step(e.pos);
    struct Guard {
      int& d;
      Guard(int& dd, const Renderer& r, std::size_t pos) : d(dd) {
        if (++d > r.lim_.max_depth) r.fail(pos, "nested too deeply");
      }
      ~Guard() { --d; }
    } g(depth_, *this, e.pos);
    switch (e.k) {
      case Expr::Const: return Value::of(e.value);
      case Expr::Name: return lookup(e.name);
      case Expr::List: {
        json a = json::array();
        for (const auto& x : e.args) a.push_back(need(eval(*x), x->pos));
        return Value::of(std::move(a));
      }
      case Expr::Dict: {
        json o = json::object();
        for (std::size_t i = 0; i + 1 < e.args.size(); i += 2) {
          const json k = need(eval(*e.args[i]), e.args[i]->pos);
          if (!k.is_string()) fail(e.args[i]->pos, "only string keys are supported in dict literals");
          o[k.get<std::string>()] = need(eval(*e.args[i + 1]), e.args[i + 1]->pos);
        }
        return Value::of(std::move(o));
      }
      case Expr::Attr: return getattr(eval(*e.args[0]), e.name, e.pos);
      case Expr::Item: return getitem(eval(*e.args[0]), eval(*e.args[1]), e.pos);
      case Expr::Slice: {
        const Value obj = eval(*e.args[0]);
        Value parts[3];
        const Value* p[3] = {nullptr, nullptr, nullptr};
        for (int i = 0; i < 3; ++i) {
          if (e.args[static_cast<std::size_t>(i) + 1]) {
            parts[i] = eval(*e.args[static_cast<std::size_t>(i) + 1]);
            p[i] = &parts[i];
          }
        }
        const json& o = need(obj, e.pos);
        if (o.is_array()) {
          std::vector<json> v(o.begin(), o.end());
          return Value::of(json(slice_seq(v, p[0], p[1], p[2], e.pos)));
        }
        if (o.is_string()) return Value::of(json(to_utf8(slice_seq(to_u32(o.get_ref<const std::string&>()), p[0], p[1], p[2], e.pos))));
        fail(e.pos, "'" + type_name(o) + "' object is not subscriptable");
      }
      case Expr::Neg:
      case Expr::Pos: {
        const Value operand = eval(*e.args[0]);  // need() returns a reference into it
        const json& v = need(operand, e.pos);
        if (!is_num(v)) fail(e.pos, "bad operand type for unary " + std::string(e.k == Expr::Neg ? "-" : "+") + ": '" + type_name(v) + "'");
        if (e.k == Expr::Pos) return Value::of(v.is_boolean() ? json(inum(v)) : v);
        if (v.is_number_float()) return Value::of(json(-v.get<double>()));
        if (inum(v) == INT64_MIN) fail(e.pos, "integer overflow in unary - (integers are 64-bit here)");
        return Value::of(json(-inum(v)));
      }
      case Expr::Not: return Value::of(json(!truthy(eval(*e.args[0]))));
      case Expr::And: {
        Value l = eval(*e.args[0]);
        return truthy(l) ? eval(*e.args[1]) : l;
      }
      case Expr::Or: {
        Value l = eval(*e.args[0]);
        return truthy(l) ? l : eval(*e.args[1]);
      }
      case Expr::Cond:
        if (truthy(eval(*e.args[0]))) return eval(*e.args[1]);
        return e.args.size() > 2 ? eval(*e.args[2]) : Value::undef("the conditional expression has no else");
      case Expr::Bin: return binary(e);
      case Expr::Filter: return filter(e);
      case Expr::Test: {
        const bool r = test(e);
        return Value::of(json(e.negate ? !r : r));
      }
      case Expr::Call: return call(e);
    }
    fail(e.pos, "unsupported expression");
  }

  Value binary(const Expr& e) {
    const std::string& op = e.name;
    const Value lv = eval(*e.args[0]);
    const Value rv = eval(*e.args[1]);
    if (op == "==") return Value::of(json(val_eq(lv, rv)));
    if (op == "!=") return Value::of(json(!val_eq(lv, rv)));
    if (op == "~") return Value::of(json(to_str(lv) + to_str(rv)));
    if (op == "in" || op == "not in") {
      bool found = false;
      if (rv.k == Value::Json) {
        const json& c = rv.J();
        if (c.is_string()) {
          const json& x = need(lv, e.pos);
          if (!x.is_string()) fail(e.pos, "'in <string>' requires string as left operand, not " + type_name(x));
          found = c.get_ref<const std::string&>().find(x.get_ref<const std::string&>()) != std::string::npos;
        } else if (c.is_array()) {
          for (const json& it : c) found = found || (lv.k == Value::Json && py_eq(it, lv.J()));
        } else if (c.is_object()) {
          found = lv.k == Value::Json && lv.J().is_string() && c.contains(lv.J().get<std::string>());
        } else {
          fail(e.pos, "argument of type '" + type_name(c) + "' is not iterable");
        }
      } else if (rv.k == Value::Ns) {
        fail(e.pos, "argument of type 'Namespace' is not iterable");
      }
      return Value::of(json(op == "in" ? found : !found));
    }
    const json& a = need(lv, e.args[0]->pos);
    const json& b = need(rv, e.args[1]->pos);
    auto type_error = [&]() {
      fail(e.pos, "unsupported operand types for " + op + ": '" + type_name(a) + "' and '" + type_name(b) + "'");
    };
    if (op == "<" || op == ">" || op == "<=" || op == ">=") {
      int c = 0;
      if (is_num(a) && is_num(b)) {
        const double x = num(a), y = num(b);
        if (is_int(a) && is_int(b)) c = inum(a) < inum(b) ? -1 : inum(a) > inum(b) ? 1 : 0;
        else c = x < y ? -1 : x > y ? 1 : 0;
      } else if (a.is_string() && b.is_string()) {
        c = a.get_ref<const std::string&>().compare(b.get_ref<const std::string&>());
        c = c < 0 ? -1 : c > 0 ? 1 : 0;
      } else {
        fail(e.pos, "'" + op + "' not supported between instances of '" + type_name(a) + "' and '" + type_name(b) + "'");
      }
      const bool r = op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0;
      return Value::of(json(r));
    }
    if (op == "+") {
      if (a.is_string() && b.is_string()) {
        if (a.get_ref<const std::string&>().size() + b.get_ref<const std::string&>().size() > lim_.max_output) fail(e.pos, "a string longer than the output limit");
        return Value::of(json(a.get<std::string>() + b.get<std::string>()));
      }
      if (a.is_array() && b.is_array()) {
        json r = a;
        for (const json& x : b) r.push_back(x);
        return Value::of(std::move(r));
      }
    }
    if (op == "*" && ((a.is_string() && (is_int(b) || b.is_boolean())) || (b.is_string() && (is_int(a) || a.is_boolean())))) {
      const std::string& s = a.is_string() ? a.get_ref<const std::string&>() : b.get_ref<const std::string&>();
      const std::int64_t n = a.is_string() ? inum(b) : inum(a);
      if (n > 0 && !s.empty() && static_cast<std::uint64_t>(n) > lim_.max_output / s.size()) fail(e.pos, "a string longer than the output limit");
      std::string r;
      for (std::int64_t i = 0; i < n; ++i) r += s;
      return Value::of(json(r));
    }
    if (!is_num(a) || !is_num(b)) type_error();
    const bool ints = !a.is_number_float() && !b.is_number_float();
    if (op == "/") {
      if (num(b) == 0) fail(e.pos, "division by zero");
      return Value::of(json(num(a) / num(b)));
    }
    if (ints) {
      const std::int64_t x = inum(a), y = inum(b);
      std::int64_t res = 0;
      // Python's integers do not overflow; 64-bit ones that would are refused
      const auto overflow = [&]() { fail(e.pos, "integer overflow in " + op + " (integers are 64-bit here)"); };
      if (op == "+") return __builtin_add_overflow(x, y, &res) ? (overflow(), Value()) : Value::of(json(res));
      if (op == "-") return __builtin_sub_overflow(x, y, &res) ? (overflow(), Value()) : Value::of(json(res));
      if (op == "*") return __builtin_mul_overflow(x, y, &res) ? (overflow(), Value()) : Value::of(json(res));
      if (op == "//" || op == "%") {
        if (y == 0) fail(e.pos, "integer division or modulo by zero");
        if (x == INT64_MIN && y == -1) overflow();
        std::int64_t q = x / y, r = x % y;
        if (r != 0 && ((r < 0) != (y < 0))) {
          --q;
          r += y;
        }
        return Value::of(json(op == "//" ? q : r));
      }
      if (op == "**") {
        if (y < 0) return Value::of(json(std::pow(static_cast<double>(x), static_cast<double>(y))));
        std::int64_t p = 1;
        for (std::int64_t i = 0; i < y; ++i) {
          if (__builtin_mul_overflow(p, x, &p)) overflow();
          if (p == 0 || p == 1) break;  // x is 0 or 1
          if (p == -1) {                 // x is -1
            p = y % 2 == 0 ? 1 : -1;
            break;
          }
        }
        return Value::of(json(p));
      }
    }
    const double x = num(a), y = num(b);
    if (op == "+") return Value::of(json(x + y));
    if (op == "-") return Value::of(json(x - y));
    if (op == "*") return Value::of(json(x * y));
    if (op == "**") return Value::of(json(std::pow(x, y)));
    if (op == "//" || op == "%") {
      if (y == 0) fail(e.pos, "float division or modulo by zero");
      const double m = std::fmod(x, y);
      const double r = (m != 0 && ((m < 0) != (y < 0))) ? m + y : m;
      return Value::of(json(op == "//" ? std::floor(x / y) : r));
    }
    type_error();
    return {};
  }

  // Arguments of a call, filter or test: positional (after `skip` leading ones) and keywords.
  struct Args {
    std::vector<Value> pos;
    std::map<std::string, Value> kw;
    const Value* get(std::size_t i, const char* name) const {
      if (i < pos.size()) return &pos[i];
      const auto f = kw.find(name);
      return f == kw.end() ? nullptr : &f->second;
    }
  };
  Args eval_args(const Expr& e, std::size_t skip) {
    Args a;
    for (std::size_t i = skip; i < e.args.size(); ++i) a.pos.push_back(eval(*e.args[i]));
    for (const auto& [k, v] : e.kwargs) a.kw[k] = eval(*v);
    return a;
  }
  std::string str_arg(const Args& a, std::size_t i, const char* name, std::size_t pos, const std::string& dflt, bool* given = nullptr) {
    const Value* v = a.get(i, name);
    if (given) *given = v != nullptr && !(v->k == Value::Json && v->j.is_null());
    if (!v || (v->k == Value::Json && v->j.is_null())) return dflt;
    const json& j = need(*v, pos);
    if (!j.is_string()) fail(pos, std::string("argument '") + name + "' must be a string, not " + type_name(j));
    return j.get<std::string>();
  }
  std::int64_t int_arg(const Args& a, std::size_t i, const char* name, std::size_t pos, std::int64_t dflt) {
    const Value* v = a.get(i, name);
    if (!v || (v->k == Value::Json && v->j.is_null())) return dflt;
    const json& j = need(*v, pos);
    if (!is_int(j) && !j.is_boolean()) fail(pos, std::string("argument '") + name + "' must be an integer");
    return inum(j);
  }

  static std::size_t length_of(const json& j) {
    if (j.is_string()) return to_u32(j.get_ref<const std::string&>()).size();
    if (j.is_array() || j.is_object()) return j.size();
    return static_cast<std::size_t>(-1);
  }

  Value filter(const Expr& e) {
    const std::string& f = e.name;
    const Value v = eval(*e.args[0]);
    const Args a = eval_args(e, 1);
    const std::size_t pos = e.pos;
    if (f == "default" || f == "d") {
      const Value* d = a.get(0, "default_value");
      const Value* b = a.get(1, "boolean");
      const bool boolean = b && truthy(*b);
      if (v.k == Value::Undef || (boolean && !truthy(v))) return d ? *d : Value::of(json(""));
      return v;
    }
    if (f == "length" || f == "count") {
      if (v.k == Value::Undef) return Value::of(json(0));
      const std::size_t n = length_of(need(v, pos));
      if (n == static_cast<std::size_t>(-1)) fail(pos, "object of type '" + type_name(v.J()) + "' has no len()");
      return Value::of(json(n));
    }
    if (f == "string") return Value::of(json(to_str(v)));
    if (f == "safe") return v;
    if (f == "list") {
      json out = json::array();
      for (json& x : iterate(v, pos)) out.push_back(std::move(x));
      return Value::of(std::move(out));
    }
    if (f == "tojson") {
      int indent = -1;
      if (const Value* iv = a.get(0, "indent"); iv && !(iv->k == Value::Json && iv->j.is_null())) indent = static_cast<int>(int_arg(a, 0, "indent", pos, -1));
      std::string out;
      dumps(out, v.k == Value::Ns ? *v.ns : need(v, pos), indent, 0);
      return Value::of(json(out));
    }
    if (f == "join") {
      const std::string sep = str_arg(a, 0, "d", pos, "");
      const Value* attr = a.get(1, "attribute");
      std::string out;
      bool first = true;
      for (const json& x : iterate(v, pos)) {
        if (!first) out += sep;
        first = false;
        out += attr ? to_str(getattr(Value::of(x), to_str(*attr), pos)) : py_str(x);
        if (out.size() > lim_.max_output) fail(pos, "a string longer than the output limit");
      }
      return Value::of(json(out));
    }
    if (f == "first" || f == "last") {
      const std::vector<json> items = iterate(v, pos);
      if (items.empty()) return Value::undef("no first item, sequence was empty");
      return Value::of(f == "first" ? items.front() : items.back());
    }
    if (f == "reverse") {
      const json& j = need(v, pos);
      if (j.is_string()) {
        std::u32string u = to_u32(j.get_ref<const std::string&>());
        std::reverse(u.begin(), u.end());
        return Value::of(json(to_utf8(u)));
      }
      std::vector<json> items = iterate(v, pos);
      std::reverse(items.begin(), items.end());
      return Value::of(json(items));
    }
    if (f == "items") {
      if (v.k == Value::Undef) return Value::of(json::array());
      const json& j = need(v, pos);
      if (!j.is_object()) fail(pos, "can only get item pairs from a mapping");
      json out = json::array();
      for (auto it = j.begin(); it != j.end(); ++it) out.push_back(json::array({it.key(), it.value()}));
      return Value::of(std::move(out));
    }
    if (f == "selectattr" || f == "rejectattr" || f == "select" || f == "reject") {
      const bool by_attr = f == "selectattr" || f == "rejectattr";
      const bool keep_if = f == "selectattr" || f == "select";
      std::size_t k = 0;
      std::string attr;
      if (by_attr) attr = str_arg(a, k++, "attribute", pos, "");
      std::string tname = a.pos.size() > k ? to_str(a.pos[k]) : "";
      if (!tname.empty() && std::find(known_tests().begin(), known_tests().end(), tname) == known_tests().end()) {
        fail(pos, "no test named '" + tname + "'");
      }
      json out = json::array();
      for (const json& x : iterate(v, pos)) {
        const Value item = by_attr ? getattr(Value::of(x), attr, pos) : Value::of(x);
        const bool r = tname.empty() ? truthy(item) : run_test(tname, item, std::vector<Value>(a.pos.begin() + static_cast<std::ptrdiff_t>(k) + 1, a.pos.end()), pos);
        if (r == keep_if) out.push_back(x);
      }
      return Value::of(std::move(out));
    }
    if (f == "map") {
      json out = json::array();
      const Value* attr = a.kw.count("attribute") ? &a.kw.at("attribute") : nullptr;
      if (!attr && (a.pos.empty() || to_str(a.pos[0]) != "string")) fail(pos, "map: only map(attribute=...) and map('string') are supported");
      for (const json& x : iterate(v, pos)) {
        if (attr) {
          Value r = getattr(Value::of(x), to_str(*attr), pos);
          if (r.k == Value::Undef) {
            const auto d = a.kw.find("default");
            r = d != a.kw.end() ? d->second : Value::of(json(nullptr));
            if (d == a.kw.end()) {
              out.push_back(json(nullptr));  // jinja2 yields Undefined; rendered lists show it as None-like
              continue;
            }
          }
          out.push_back(need(r, pos));
        } else {
          out.push_back(json(py_str(x)));
        }
      }
      return Value::of(std::move(out));
    }
    // Filters on one string or number.
    if (v.k == Value::Undef && (f == "trim" || f == "upper" || f == "lower" || f == "capitalize" || f == "title" || f == "replace" || f == "indent")) {
      return Value::of(json(""));
    }
    if (f == "trim") {
      bool given = false;
      const std::string chars = str_arg(a, 0, "chars", pos, "", &given);
      const std::u32string cs = to_u32(chars);
      return Value::of(json(py_strip(to_str(v), given ? &cs : nullptr, true, true)));
    }
    if (f == "upper" || f == "lower" || f == "capitalize" || f == "title") {
      std::string s = to_str(v);
      bool start = true;
      for (std::size_t i = 0; i < s.size(); ++i) {
        char& c = s[i];
        const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        bool up = f == "upper" || (f == "capitalize" && i == 0) || (f == "title" && start);
        if (up && c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
        else if (!up && c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
        start = !alpha && !(static_cast<unsigned char>(c) >= 0x80);
      }
      return Value::of(json(s));
    }
    if (f == "replace") {
      const std::string s = to_str(v);
      const std::string from = str_arg(a, 0, "old", pos, ""), to = str_arg(a, 1, "new", pos, "");
      const std::int64_t count = int_arg(a, 2, "count", pos, -1);
      return Value::of(json(replace(s, from, to, count, pos)));
    }
    if (f == "indent") {
      const std::int64_t w = int_arg(a, 0, "width", pos, 4);
      const Value* fst = a.get(1, "first");
      const Value* blank = a.get(2, "blank");
      const std::string pad(static_cast<std::size_t>(std::clamp<std::int64_t>(w, 0, 1000)), ' ');
      const std::string s = to_str(v);
      std::string out;
      std::size_t start = 0;
      bool first_line = true;
      while (true) {
        const std::size_t nl = s.find('\n', start);
        const std::string line = s.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
        if (first_line ? (fst && truthy(*fst)) : (!line.empty() || (blank && truthy(*blank)))) out += pad;
        out += line;
        if (nl == std::string::npos) break;
        out += "\n";
        start = nl + 1;
        first_line = false;
      }
      return Value::of(json(out));
    }
    const json& j = need(v, pos);
    if (f == "int") {
      if (is_int(j) || j.is_boolean()) return Value::of(json(inum(j)));
      if (j.is_number_float()) {
        const double d = j.get<double>();
        if (!(std::fabs(d) < 9.2e18)) fail(pos, "int: " + py_float(d) + " does not fit 64 bits");
        return Value::of(json(static_cast<std::int64_t>(d)));
      }
      if (j.is_string()) {
        std::int64_t x = 0;
        const std::string s = py_strip(j.get<std::string>(), nullptr, true, true);
        const auto r = std::from_chars(s.data(), s.data() + s.size(), x);
        if (r.ec == std::errc() && r.ptr == s.data() + s.size()) return Value::of(json(x));
      }
      return Value::of(json(int_arg(a, 0, "default", pos, 0)));
    }
    if (f == "float") {
      if (is_num(j)) return Value::of(json(num(j)));
      if (j.is_string()) {
        const std::string s = py_strip(j.get<std::string>(), nullptr, true, true);
        char* end = nullptr;
        const double x = std::strtod(s.c_str(), &end);
        if (!s.empty() && end == s.c_str() + s.size()) return Value::of(json(x));
      }
      return Value::of(json(0.0));
    }
    if (f == "abs") {
      if (j.is_number_float()) return Value::of(json(std::fabs(j.get<double>())));
      if (is_int(j) || j.is_boolean()) {
        if (inum(j) == INT64_MIN) fail(pos, "integer overflow in abs");
        return Value::of(json(std::llabs(inum(j))));
      }
      fail(pos, "bad operand type for abs(): '" + type_name(j) + "'");
    }
    if (f == "round") {
      if (!is_num(j)) fail(pos, "round: a number is required");
      const std::int64_t prec = int_arg(a, 0, "precision", pos, 0);
      const double m = std::pow(10.0, static_cast<double>(prec));
      return Value::of(json(std::nearbyint(num(j) * m) / m));
    }
    if (f == "wordcount") {
      std::int64_t n = 0;
      bool in = false;
      for (const char32_t c : to_u32(to_str(v))) {
        const bool w = !py_space(c);
        if (w && !in) ++n;
        in = w;
      }
      return Value::of(json(n));
    }
    if (f == "unique" || f == "sum" || f == "min" || f == "max" || f == "dictsort") {
      std::vector<json> items = iterate(v, pos);
      if (f == "unique") {
        json out = json::array();
        for (const json& x : items) {
          bool seen = false;
          for (const json& y : out) seen = seen || py_eq(x, y);
          if (!seen) out.push_back(x);
        }
        return Value::of(std::move(out));
      }
      if (f == "sum") {
        json acc = json(0);
        for (const json& x : items) {
          if (!is_num(x)) fail(pos, "sum: unsupported operand type '" + type_name(x) + "'");
          std::int64_t r = 0;
          if (acc.is_number_float() || x.is_number_float()) acc = json(num(acc) + num(x));
          else if (__builtin_add_overflow(inum(acc), inum(x), &r)) fail(pos, "integer overflow in sum");
          else acc = json(r);
        }
        return Value::of(acc);
      }
      if (f == "dictsort") {
        if (!j.is_object()) fail(pos, "dictsort: a mapping is required");
        std::vector<std::string> keys;
        for (auto it = j.begin(); it != j.end(); ++it) keys.push_back(it.key());
        std::sort(keys.begin(), keys.end());
        json out = json::array();
        for (const auto& k : keys) out.push_back(json::array({k, j.at(k)}));
        return Value::of(std::move(out));
      }
      if (items.empty()) return Value::undef("no items");
      json best = items[0];
      for (const json& x : items) {
        const bool less = (is_num(x) && is_num(best)) ? num(x) < num(best) : (x.is_string() && best.is_string()) ? x.get<std::string>() < best.get<std::string>() : false;
        if (f == "min" ? less : (!less && !py_eq(x, best))) best = x;
      }
      return Value::of(best);
    }
    fail(pos, "no filter named '" + f + "'");
  }

  std::string replace(const std::string& s, const std::string& from, const std::string& to, std::int64_t count, std::size_t pos) {
    std::string out;
    if (from.empty()) {  // Python inserts `to` between characters
      const std::u32string u = to_u32(s);
      std::int64_t n = 0;
      for (std::size_t i = 0; i <= u.size(); ++i) {
        if (count < 0 || n < count) {
          out += to;
          ++n;
        }
        if (i < u.size()) append_utf8(out, u[i]);
        if (out.size() > lim_.max_output) fail(pos, "a string longer than the output limit");
      }
      return out;
    }
    std::size_t p = 0;
    std::int64_t n = 0;
    while (count < 0 || n < count) {
      const std::size_t f = s.find(from, p);
      if (f == std::string::npos) break;
      out.append(s, p, f - p);
      out += to;
      if (out.size() > lim_.max_output) fail(pos, "a string longer than the output limit");
      p = f + from.size();
      ++n;
    }
    out.append(s, p, std::string::npos);
    return out;
  }

  bool test(const Expr& e) {
    const Value v = eval(*e.args[0]);
    const Args a = eval_args(e, 1);
    return run_test(e.name, v, a.pos, e.pos);
  }

  bool run_test(const std::string& t, const Value& v, const std::vector<Value>& args, std::size_t pos) {
    if (t == "defined") return v.k != Value::Undef;
    if (t == "undefined") return v.k == Value::Undef;
    if (t == "callable") return false;
    const bool js = v.k == Value::Json;
    const json& j = v.J();
    if (t == "none") return js && j.is_null();
    if (t == "boolean") return js && j.is_boolean();
    if (t == "true") return js && j.is_boolean() && j.get<bool>();
    if (t == "false") return js && j.is_boolean() && !j.get<bool>();
    if (t == "integer") return js && is_int(j);
    if (t == "float") return js && j.is_number_float();
    if (t == "number") return js && is_num(j);
    if (t == "string") return js && j.is_string();
    if (t == "mapping") return (js && j.is_object()) || v.k == Value::Ns;
    if (t == "iterable" || t == "sequence") return v.k == Value::Undef ? t == "iterable" : js && (j.is_array() || j.is_object() || j.is_string());
    if (t == "lower" || t == "upper") {
      if (!js || !j.is_string()) return false;
      const std::string& s = j.get_ref<const std::string&>();
      bool cased = false;
      for (const char c : s) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
          cased = true;
          if (t == "lower" ? (c >= 'A' && c <= 'Z') : (c >= 'a' && c <= 'z')) return false;
        }
      }
      return cased;
    }
    if (t == "odd" || t == "even" || t == "divisibleby") {
      const json& x = need(v, pos);
      if (!is_int(x) && !x.is_boolean()) fail(pos, "test '" + t + "' needs an integer");
      const std::int64_t n = inum(x);
      if (t == "odd") return n % 2 != 0;
      if (t == "even") return n % 2 == 0;
      if (args.empty()) fail(pos, "divisibleby needs an argument");
      const json& d = need(args[0], pos);
      if (!is_int(d) || inum(d) == 0) fail(pos, "divisibleby needs a non-zero integer");
      return n % inum(d) == 0;
    }
    if (args.empty()) fail(pos, "test '" + t + "' needs an argument");
    const Value& o = args[0];
    if (t == "eq" || t == "equalto" || t == "==") return val_eq(v, o);
    if (t == "ne" || t == "!=") return !val_eq(v, o);
    if (t == "sameas") return val_eq(v, o) && js && (j.is_null() || j.is_boolean());
    if (t == "in") {
      const json& c = need(o, pos);
      if (c.is_string()) return js && j.is_string() && c.get_ref<const std::string&>().find(j.get_ref<const std::string&>()) != std::string::npos;
      if (c.is_array()) {
        for (const json& x : c) {
          if (js && py_eq(x, j)) return true;
        }
        return false;
      }
      if (c.is_object()) return js && j.is_string() && c.contains(j.get<std::string>());
      fail(pos, "argument of type '" + type_name(c) + "' is not iterable");
    }
    const json& a = need(v, pos);
    const json& b = need(o, pos);
    int c = 0;
    if (is_num(a) && is_num(b)) c = num(a) < num(b) ? -1 : num(a) > num(b) ? 1 : 0;
    else if (a.is_string() && b.is_string()) c = a.get<std::string>() < b.get<std::string>() ? -1 : a == b ? 0 : 1;
    else fail(pos, "'" + t + "' not supported between '" + type_name(a) + "' and '" + type_name(b) + "'");
    if (t == "lt" || t == "<" || t == "lessthan") return c < 0;
    if (t == "gt" || t == ">" || t == "greaterthan") return c > 0;
    if (t == "le" || t == "<=") return c <= 0;
    return c >= 0;
  }

  Value call(const Expr& e) {
    const Expr& callee = *e.args[0];
    const std::size_t pos = e.pos;
    if (callee.k == Expr::Name && lookup(callee.name).k == Value::Undef) {
      const std::string& fn = callee.name;
      const Args a = eval_args(e, 1);
      if (fn == "raise_exception") {
        fail(pos, "raise_exception: " + (a.pos.empty() ? std::string() : to_str(a.pos[0])));
      }
      if (fn == "namespace" || fn == "dict") {
        auto obj = std::make_shared<json>(json::object());
        for (const Value& p : a.pos) {  // namespace({...}) / dict({...})
          const json& m = need(p, pos);
          if (!m.is_object()) fail(pos, fn + "() takes a mapping");
          for (auto it = m.begin(); it != m.end(); ++it) (*obj)[it.key()] = it.value();
        }
        for (const auto& [k, v] : a.kw) {
          if (v.k == Value::Ns) fail(pos, "a namespace inside a namespace is not supported");
          (*obj)[k] = v.k == Value::Undef ? json() : v.J();
        }
        if (fn == "dict") return Value::of(*obj);
        Value v;
        v.k = Value::Ns;
        v.ns = obj;
        return v;
      }
      if (fn == "range") {
        std::int64_t lo = 0, hi = 0, st = 1;
        if (a.pos.size() == 1) {
          hi = int_arg(a, 0, "stop", pos, 0);
        } else if (a.pos.size() == 2 || a.pos.size() == 3) {
          lo = int_arg(a, 0, "start", pos, 0);
          hi = int_arg(a, 1, "stop", pos, 0);
          st = int_arg(a, 2, "step", pos, 1);
        } else {
          fail(pos, "range() takes 1 to 3 arguments");
        }
        if (st == 0) fail(pos, "range() arg 3 must not be zero");
        json out = json::array();
        for (std::int64_t i = lo; st > 0 ? i < hi : i > hi;) {
          if (out.size() >= 100000) fail(pos, "range() longer than 100000 items");
          out.push_back(i);
          if (__builtin_add_overflow(i, st, &i)) break;
        }
        return Value::of(std::move(out));
      }
      if (fn == "strftime_now") {
        const std::string fmt = str_arg(a, 0, "format", pos, "");
        const std::time_t now = std::time(nullptr);
        std::tm tm{};
        localtime_r(&now, &tm);
        char buf[256];
        const std::size_t n = std::strftime(buf, sizeof buf, fmt.c_str(), &tm);
        return Value::of(json(std::string(buf, n)));
      }
      fail(pos, "'" + fn + "' is undefined");
    }
    if (callee.k != Expr::Attr) fail(pos, "this object is not callable");
    const Value obj = eval(*callee.args[0]);
    const std::string& m = callee.name;
    const Args a = eval_args(e, 1);
    if (obj.k == Value::Undef) fail(pos, obj.hint);
    if (obj.k == Value::Ns) fail(pos, "'Namespace' object has no method '" + m + "'");
    const json& j = obj.J();
    if (j.is_object()) {
      if (m == "items") {
        json out = json::array();
        for (auto it = j.begin(); it != j.end(); ++it) out.push_back(json::array({it.key(), it.value()}));
        return Value::of(std::move(out));
      }
      if (m == "keys" || m == "values") {
        json out = json::array();
        for (auto it = j.begin(); it != j.end(); ++it) out.push_back(m == "keys" ? json(it.key()) : it.value());
        return Value::of(std::move(out));
      }
      if (m == "get") {
        const std::string k = str_arg(a, 0, "key", pos, "");
        const auto f = j.find(k);
        if (f != j.end()) return Value::of(*f);
        const Value* d = a.get(1, "default");
        return d ? *d : Value::of(json(nullptr));
      }
      fail(pos, "'dict object' has no method '" + m + "'");
    }
    if (j.is_string()) {
      const std::string& s = j.get_ref<const std::string&>();
      if (m == "startswith" || m == "endswith") {
        const Value* p = a.get(0, "prefix");
        if (!p) fail(pos, m + "() takes at least 1 argument");
        std::vector<std::string> cands;
        const json& pj = need(*p, pos);
        if (pj.is_string()) cands.push_back(pj.get<std::string>());
        else if (pj.is_array()) {
          for (const json& x : pj) {
            if (!x.is_string()) fail(pos, m + "(): the tuple must hold strings");
            cands.push_back(x.get<std::string>());
          }
        } else {
          fail(pos, m + "() first arg must be str or a tuple of str, not " + type_name(pj));
        }
        for (const auto& c : cands) {
          if (m == "startswith" ? s.compare(0, c.size(), c) == 0 && s.size() >= c.size()
                                : s.size() >= c.size() && s.compare(s.size() - c.size(), c.size(), c) == 0) {
            return Value::of(json(true));
          }
        }
        return Value::of(json(false));
      }
      if (m == "strip" || m == "lstrip" || m == "rstrip") {
        bool given = false;
        const std::string chars = str_arg(a, 0, "chars", pos, "", &given);
        const std::u32string cs = to_u32(chars);
        return Value::of(json(py_strip(s, given ? &cs : nullptr, m != "rstrip", m != "lstrip")));
      }
      if (m == "split") {
        bool given = false;
        const std::string sep = str_arg(a, 0, "sep", pos, "", &given);
        const std::int64_t maxsplit = int_arg(a, 1, "maxsplit", pos, -1);
        json out = json::array();
        if (given) {
          if (sep.empty()) fail(pos, "empty separator");
          std::size_t p = 0;
          std::int64_t n = 0;
          while (maxsplit < 0 || n < maxsplit) {
            const std::size_t f = s.find(sep, p);
            if (f == std::string::npos) break;
            out.push_back(s.substr(p, f - p));
            p = f + sep.size();
            ++n;
          }
          out.push_back(s.substr(p));
        } else {
          const std::u32string u = to_u32(s);
          std::size_t i = 0;
          std::int64_t n = 0;
          while (true) {
            while (i < u.size() && py_space(u[i])) ++i;
            if (i >= u.size()) break;
            if (maxsplit >= 0 && n >= maxsplit) {
              std::size_t e2 = u.size();
              while (e2 > i && py_space(u[e2 - 1])) --e2;
              out.push_back(to_utf8(u.substr(i, e2 - i)));
              break;
            }
            std::size_t k = i;
            while (k < u.size() && !py_space(u[k])) ++k;
            out.push_back(to_utf8(u.substr(i, k - i)));
            ++n;
            i = k;
          }
        }
        return Value::of(std::move(out));
      }
      if (m == "upper" || m == "lower" || m == "title" || m == "capitalize") {
        Expr fe;
        fe.k = Expr::Filter;
        fe.pos = pos;
        fe.name = m;
        fe.args.push_back(std::make_unique<Expr>());
        fe.args[0]->k = Expr::Const;
        fe.args[0]->value = j;
        return filter(fe);
      }
      if (m == "replace") {
        const std::string from = str_arg(a, 0, "old", pos, ""), to = str_arg(a, 1, "new", pos, "");
        return Value::of(json(replace(s, from, to, int_arg(a, 2, "count", pos, -1), pos)));
      }
      fail(pos, "'str object' has no method '" + m + "'");
    }
    fail(pos, "'" + type_name(j) + " object' has no method '" + m + "'");
  }
};

}  // namespace

struct JinjaTemplate::Impl {
  Source src;
  Body body;
};

JinjaTemplate::JinjaTemplate(std::string_view source, std::string origin) {
  auto impl = std::make_shared<Impl>();
  // jinja2's lexer: newlines normalized to \n, one trailing newline dropped (keep_trailing_newline off).
  std::string text;
  text.reserve(source.size());
  for (std::size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      text.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      text.push_back(source[i]);
    }
  }
  if (!text.empty() && text.back() == '\n') text.pop_back();
  impl->src.text = std::move(text);
  impl->src.origin = std::move(origin);
  Parser p(impl->src, lex(impl->src));
  impl->body = p.parse_template();
  impl_ = std::move(impl);
}

const std::string& JinjaTemplate::origin() const { return impl_->src.origin; }

std::string JinjaTemplate::render(const json& context, const JinjaLimits& limits) const {
  std::string out;
  Renderer r(impl_->src, limits, context);
  r.run(impl_->body, out);
  return out;
}

std::optional<ChatTemplateSource> chat_template_from_config(std::string_view text, const std::string& origin) {
  json cfg;
  try {
    cfg = json::parse(text);
  } catch (const json::exception& e) {
    throw JinjaError(origin + ": not valid JSON: " + e.what());
  }
  if (!cfg.is_object()) throw JinjaError(origin + ": not a JSON object");
  const auto it = cfg.find("chat_template");
  if (it == cfg.end() || it->is_null()) return std::nullopt;
  ChatTemplateSource t;
  if (it->is_string()) {
    t.source = it->get<std::string>();
  } else if (it->is_array()) {
    bool found = false;
    for (const json& x : *it) {
      if (x.is_object() && x.value("name", json()) == "default" && x.contains("template") && x["template"].is_string()) {
        t.source = x["template"].get<std::string>();
        found = true;
      }
    }
    if (!found) throw JinjaError(origin + ": chat_template: a list of templates without one named \"default\"");
  } else {
    throw JinjaError(origin + ": chat_template: expected a string or a list of {name, template}");
  }
  for (const char* k : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"}) {
    const auto f = cfg.find(k);
    if (f == cfg.end()) continue;
    if (f->is_string()) t.special_tokens[k] = *f;
    else if (f->is_object() && f->contains("content") && (*f)["content"].is_string()) t.special_tokens[k] = (*f)["content"];
  }
  return t;
}

json chat_template_context(const ChatTemplateSource& t, const json& messages, bool add_generation_prompt, const json& extra) {
  json ctx = json::object();
  for (auto it = t.special_tokens.begin(); it != t.special_tokens.end(); ++it) ctx[it.key()] = it.value();
  ctx["messages"] = messages;
  ctx["tools"] = nullptr;
  ctx["documents"] = nullptr;
  ctx["add_generation_prompt"] = add_generation_prompt;
  if (extra.is_object()) {
    for (auto it = extra.begin(); it != extra.end(); ++it) ctx[it.key()] = it.value();
  }
  return ctx;
}

}  // namespace mfqat::hf
