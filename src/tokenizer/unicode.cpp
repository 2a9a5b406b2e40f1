#include "tokenizer/unicode.hpp"

#include <algorithm>
#include <unordered_map>

#include "af/core/error.hpp"

namespace af::tok::detail {
namespace {

constexpr char kComponent[] = "tokenizer";

// Hangul syllables compose and decompose algorithmically (Unicode ch. 3.12), not by table.
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28;
constexpr char32_t kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

uint8_t ccc(char32_t cp) {
  if (cp < 0x300) return 0;
  const CccRange* end = kCccRanges + kNumCccRanges;
  const CccRange* it = std::upper_bound(kCccRanges, end, cp,
                                        [](char32_t c, const CccRange& r) { return c < r.first; });
  if (it == kCccRanges) return 0;
  --it;
  return cp <= it->last ? it->ccc : 0;
}

const Decomposition* find_decomposition(char32_t cp) {
  const Decomposition* end = kDecompositions + kNumDecompositions;
  const Decomposition* it = std::lower_bound(
      kDecompositions, end, cp, [](const Decomposition& d, char32_t c) { return d.composite < c; });
  return (it != end && it->composite == cp) ? it : nullptr;
}

void decompose(char32_t cp, std::vector<char32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const char32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  const Decomposition* d = find_decomposition(cp);
  if (d == nullptr) {
    out.push_back(cp);
    return;
  }
  decompose(d->first, out);  // decompositions nest at most a few levels deep
  if (d->second != 0) decompose(d->second, out);
}

char32_t compose_pair(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount)
    return a + (b - kTBase);
  static const std::unordered_map<uint64_t, char32_t> pairs = [] {
    std::unordered_map<uint64_t, char32_t> m;
    for (size_t i = 0; i < kNumDecompositions; ++i) {
      const Decomposition& d = kDecompositions[i];
      if (d.composes) m.emplace((uint64_t(d.first) << 21) | d.second, d.composite);
    }
    return m;
  }();
  auto it = pairs.find((uint64_t(a) << 21) | b);
  return it == pairs.end() ? 0 : it->second;
}

}  // namespace

std::vector<char32_t> decode_utf8(std::string_view text) {
  std::vector<char32_t> out;
  out.reserve(text.size());
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      out.push_back(c);
      ++i;
      continue;
    }
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    char32_t cp = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2, cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3, cp = c & 0x0F;
      if (c == 0xE0) lo = 0xA0;  // overlong
      if (c == 0xED) hi = 0x9F;  // surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4, cp = c & 0x07;
      if (c == 0xF0) lo = 0x90;  // overlong
      if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
    }
    bool ok = len != 0 && n - i >= len && p[i + 1] >= lo && p[i + 1] <= hi;
    for (size_t k = 1; ok && k < len; ++k) {
      ok = (p[i + k] & 0xC0) == 0x80;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    AF_CHECK(ok, ErrorCode::kInvalidArgument, kComponent, "input text is not valid UTF-8 (byte ", i,
             " of ", n, ")");
    out.push_back(cp);
    i += len;
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
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

std::string encode_utf8(const std::vector<char32_t>& cps, size_t begin, size_t end) {
  end = std::min(end, cps.size());
  begin = std::min(begin, end);
  std::string out;
  out.reserve(end - begin);
  for (size_t i = begin; i < end; ++i) append_utf8(out, cps[i]);
  return out;
}

std::string append_utf8_lossy(std::string& out, std::string_view bytes, bool hold_tail) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    }
    // Count how many bytes of the sequence are well formed: that prefix is the "maximal
    // subpart" replaced by a single U+FFFD when the sequence breaks off.
    size_t good = len == 0 ? 0 : 1;
    if (len != 0 && i + 1 < n && p[i + 1] >= lo && p[i + 1] <= hi) {
      good = 2;
      while (good < len && i + good < n && (p[i + good] & 0xC0) == 0x80) ++good;
    }
    if (len != 0 && good == len) {
      out.append(bytes.substr(i, len));
      i += len;
    } else if (len != 0 && i + good == n && hold_tail) {
      return std::string(bytes.substr(i));  // may still be completed by later bytes
    } else {
      out.append("\xEF\xBF\xBD");
      i += std::max<size_t>(good, 1);
    }
  }
  return {};
}

CharClass char_class(char32_t cp) {
  const ClassRange* end = kClassRanges + kNumClassRanges;
  const ClassRange* it = std::upper_bound(
      kClassRanges, end, cp, [](char32_t c, const ClassRange& r) { return c < r.first; });
  if (it == kClassRanges) return CharClass::kOther;
  --it;
  return cp <= it->last ? it->cls : CharClass::kOther;
}

bool is_whitespace(char32_t cp) {
  // The Unicode White_Space property: stable since Unicode 6.3, so written out here.
  if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
  if (cp < 0x85) return false;
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

namespace {

const Expansion* find_expansion(const Expansion* table, size_t n, char32_t cp) {
  const Expansion* end = table + n;
  const Expansion* it =
      std::lower_bound(table, end, cp, [](const Expansion& e, char32_t c) { return e.cp < c; });
  return (it != end && it->cp == cp) ? it : nullptr;
}

// Full decomposition (the tables hold the complete expansion), then canonical ordering.
std::vector<char32_t> decompose_all(const std::vector<char32_t>& cps, bool compat) {
  const Expansion* table = compat ? kNfkd : kNfd;
  const size_t n = compat ? kNumNfkd : kNumNfd;
  const char32_t* data = compat ? kNfkdData : kNfdData;
  std::vector<char32_t> d;
  d.reserve(cps.size() + 8);
  for (char32_t c : cps) {
    if (c < 0xA0) {
      d.push_back(c);
    } else if (c >= kSBase && c < kSBase + kSCount) {
      decompose(c, d);
    } else if (const Expansion* e = find_expansion(table, n, c)) {
      d.insert(d.end(), data + e->offset, data + e->offset + e->length);
    } else {
      d.push_back(c);
    }
  }
  for (size_t i = 0; i < d.size();) {
    if (ccc(d[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < d.size() && ccc(d[j]) != 0) ++j;
    std::stable_sort(d.begin() + i, d.begin() + j,
                     [](char32_t a, char32_t b) { return ccc(a) < ccc(b); });
    i = j;
  }
  return d;
}

std::vector<char32_t> compose(const std::vector<char32_t>& d);

}  // namespace

std::vector<char32_t> normalize(NormalForm form, const std::vector<char32_t>& cps) {
  switch (form) {
    case NormalForm::kNone:
      return cps;
    case NormalForm::kNfc:
      return nfc(cps);
    case NormalForm::kNfd:
      return decompose_all(cps, false);
    case NormalForm::kNfkd:
      return decompose_all(cps, true);
    case NormalForm::kNfkc:
      if (std::all_of(cps.begin(), cps.end(), [](char32_t c) { return c < 0xA0; })) return cps;
      return compose(decompose_all(cps, true));
  }
  return cps;
}

void append_lower(std::vector<char32_t>& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back((cp >= 'A' && cp <= 'Z') ? cp + 32 : cp);
    return;
  }
  if (const Expansion* e = find_expansion(kLower, kNumLower, cp)) {
    out.insert(out.end(), kLowerData + e->offset, kLowerData + e->offset + e->length);
  } else {
    out.push_back(cp);
  }
}

namespace {
bool in_ranges(const CharRange* table, size_t n, char32_t cp) {
  const CharRange* end = table + n;
  const CharRange* it =
      std::upper_bound(table, end, cp, [](char32_t c, const CharRange& r) { return c < r.first; });
  if (it == table) return false;
  --it;
  return cp <= it->last;
}
}  // namespace

bool is_nonspacing_mark(char32_t cp) {
  return cp >= 0x300 && in_ranges(kNonspacingMarks, kNumNonspacingMarks, cp);
}

bool is_control(char32_t cp) { return in_ranges(kControls, kNumControls, cp); }

GraphemeBreak grapheme_break(char32_t cp) {
  if (cp >= 0x20 && cp < 0x7F) return GraphemeBreak::kOther;
  const GraphemeRange* end = kGraphemeRanges + kNumGraphemeRanges;
  const GraphemeRange* it = std::upper_bound(
      kGraphemeRanges, end, cp, [](char32_t c, const GraphemeRange& r) { return c < r.first; });
  if (it == kGraphemeRanges) return GraphemeBreak::kOther;
  --it;
  return cp <= it->last ? static_cast<GraphemeBreak>(it->value) : GraphemeBreak::kOther;
}

size_t grapheme_end(const std::vector<char32_t>& cps, size_t begin) {
  using G = GraphemeBreak;
  const size_t n = cps.size();
  if (begin >= n) return n;
  G prev = grapheme_break(cps[begin]);
  bool emoji = prev == G::kExtPict;  // ExtPict Extend* seen so far (for GB11)
  bool emoji_zwj = false;            // ... followed by ZWJ
  size_t regional = prev == G::kRegionalIndicator ? 1 : 0;
  size_t j = begin + 1;
  for (; j < n; ++j) {
    const G cur = grapheme_break(cps[j]);
    bool join;
    if (prev == G::kCr && cur == G::kLf) {
      join = true;  // GB3
    } else if (prev == G::kCr || prev == G::kLf || prev == G::kControl || cur == G::kCr ||
               cur == G::kLf || cur == G::kControl) {
      join = false;  // GB4, GB5
    } else if (prev == G::kL && (cur == G::kL || cur == G::kV || cur == G::kLv || cur == G::kLvt)) {
      join = true;  // GB6
    } else if ((prev == G::kLv || prev == G::kV) && (cur == G::kV || cur == G::kT)) {
      join = true;  // GB7
    } else if ((prev == G::kLvt || prev == G::kT) && cur == G::kT) {
      join = true;  // GB8
    } else if (cur == G::kExtend || cur == G::kZwj || cur == G::kSpacingMark) {
      join = true;  // GB9, GB9a
    } else if (prev == G::kPrepend) {
      join = true;  // GB9b
    } else if (emoji_zwj && cur == G::kExtPict) {
      join = true;  // GB11
    } else if (prev == G::kRegionalIndicator && cur == G::kRegionalIndicator) {
      join = regional % 2 == 1;  // GB12, GB13
    } else {
      join = false;  // GB999
    }
    if (!join) break;
    emoji_zwj = emoji && cur == G::kZwj;
    emoji = (emoji && cur == G::kExtend) || cur == G::kExtPict;
    regional = cur == G::kRegionalIndicator ? regional + 1 : 0;
    prev = cur;
  }
  return j;
}

std::vector<char32_t> nfc(const std::vector<char32_t>& cps) {
  // Nothing below U+0300 decomposes into or composes with anything under NFC.
  if (std::all_of(cps.begin(), cps.end(), [](char32_t c) { return c < 0x300; })) return cps;

  std::vector<char32_t> d;
  d.reserve(cps.size() + 8);
  for (char32_t c : cps) decompose(c, d);
  // Canonical ordering: stable sort of every run of non-starters by combining class.
  for (size_t i = 0; i < d.size();) {
    if (ccc(d[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < d.size() && ccc(d[j]) != 0) ++j;
    std::stable_sort(d.begin() + i, d.begin() + j,
                     [](char32_t a, char32_t b) { return ccc(a) < ccc(b); });
    i = j;
  }
  return compose(d);
}

namespace {
std::vector<char32_t> compose(const std::vector<char32_t>& d) {
  // Canonical composition: a character joins the last starter unless something between them
  // blocks it (a starter, or a mark of equal or higher class).
  std::vector<char32_t> out;
  out.reserve(d.size());
  size_t starter = SIZE_MAX;
  int last_class = -1;
  for (char32_t c : d) {
    const int cls = ccc(c);
    if (starter != SIZE_MAX && (last_class < cls || last_class == 0)) {
      if (char32_t comp = compose_pair(out[starter], c); comp != 0) {
        out[starter] = comp;
        continue;
      }
    }
    if (cls == 0) {
      starter = out.size();
      last_class = 0;
    } else {
      last_class = cls;
    }
    out.push_back(c);
  }
  return out;
}
}  // namespace

}  // namespace af::tok::detail
