// The library's own SHA-256 (it replaced OpenSSL's so that embedding needs no crypto library)
// against the FIPS 180-4 example digests, fed whole and in uneven pieces.
#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "modalities/sha256.hpp"

namespace {

using af::modalities::detail::Sha256;
using af::modalities::detail::sha256_hex;
using af::modalities::detail::to_hex;

std::span<const uint8_t> bytes_of(std::string_view text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

TEST(Sha256, MatchesFips180Examples) {
  EXPECT_EQ(sha256_hex(bytes_of("")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex(bytes_of("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex(bytes_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex(bytes_of(std::string(1000000, 'a'))),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, PiecesGiveTheDigestOfTheWhole) {
  std::string text;
  for (int i = 0; i < 1000; ++i) text += char('a' + i % 26);
  const std::string whole = sha256_hex(bytes_of(text));
  for (size_t piece : {1u, 7u, 63u, 64u, 65u, 200u}) {
    Sha256 sha;
    for (size_t at = 0; at < text.size(); at += piece) {
      sha.update(bytes_of(std::string_view(text).substr(at, piece)));
    }
    EXPECT_EQ(to_hex(sha.finish()), whole) << "pieces of " << piece;
  }
}

}  // namespace
