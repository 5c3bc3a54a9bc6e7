#include "common/crypto.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <optional>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/secrets.h"

namespace omniroute::crypto {
namespace {

std::string Unhex(std::string_view hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out += static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16));
  }
  return out;
}

// ---- Encodings ----

TEST(CryptoBase64Test, Rfc4648Vectors) {
  const std::pair<const char*, const char*> kVectors[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [plain, encoded] : kVectors) {
    EXPECT_EQ(Base64Encode(plain), encoded);
    EXPECT_EQ(Base64Decode(encoded).value(), plain);
    std::string unpadded(encoded);
    while (!unpadded.empty() && unpadded.back() == '=') unpadded.pop_back();
    EXPECT_EQ(Base64UrlEncode(plain), unpadded);
    EXPECT_EQ(Base64UrlDecode(unpadded).value(), plain);
    EXPECT_EQ(Base64UrlDecode(encoded).value(), plain);  // padding optional
  }
}

TEST(CryptoBase64Test, AlphabetsDiffer) {
  const std::string bytes = "\xfb\xff\xbf";
  EXPECT_EQ(Base64Encode(bytes), "+/+/");
  EXPECT_EQ(Base64UrlEncode(bytes), "-_-_");
  EXPECT_FALSE(Base64UrlDecode("+/+/").ok());
  EXPECT_FALSE(Base64Decode("-_-_").ok());
}

TEST(CryptoBase64Test, RoundTripsAllByteValues) {
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  for (size_t n = 0; n <= all.size(); n += 37) {
    const std::string data = all.substr(0, n);
    EXPECT_EQ(Base64Decode(Base64Encode(data)).value(), data);
    EXPECT_EQ(Base64UrlDecode(Base64UrlEncode(data)).value(), data);
  }
  const std::string random = RandomBytes(1000);
  EXPECT_EQ(Base64UrlDecode(Base64UrlEncode(random)).value(), random);
}

TEST(CryptoBase64Test, RejectsMalformed) {
  EXPECT_FALSE(Base64UrlDecode("a").ok());     // impossible length
  EXPECT_FALSE(Base64UrlDecode("ab c").ok());  // whitespace
  EXPECT_FALSE(Base64UrlDecode("Zg=").ok());   // padding to a wrong length
  EXPECT_FALSE(Base64UrlDecode("Zg===").ok());
  EXPECT_FALSE(Base64UrlDecode("Zh").ok());  // non-zero unused bits
  EXPECT_FALSE(Base64Decode("Zm9v!").ok());
  EXPECT_EQ(Base64UrlDecode("Zh").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CryptoRandomTest, SizesAndDistinct) {
  EXPECT_EQ(RandomBytes(0).size(), 0u);
  EXPECT_EQ(RandomBytes(33).size(), 33u);
  EXPECT_NE(RandomBytes(16), RandomBytes(16));
}

// ---- Key derivation ----

TEST(CryptoKdfTest, HkdfRfc5869Case1) {
  const std::string ikm(22, '\x0b');
  const std::string salt = Unhex("000102030405060708090a0b0c");
  const std::string info = Unhex("f0f1f2f3f4f5f6f7f8f9");
  EXPECT_EQ(Hex(HkdfSha256(ikm, salt, info, 42)),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
}

TEST(CryptoKdfTest, HkdfRfc5869Case3EmptySaltAndInfo) {
  const std::string ikm(22, '\x0b');
  EXPECT_EQ(Hex(HkdfSha256(ikm, "", "", 42)),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8");
}

TEST(CryptoKdfTest, HmacRfc4231Case2) {
  EXPECT_EQ(Hex(HmacSha256("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(CryptoKdfTest, HmacEmptyKeyAndData) {
  EXPECT_EQ(Hex(HmacSha256("", "")),
            "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

TEST(CryptoKdfTest, Pbkdf2KnownVectors) {
  EXPECT_EQ(Hex(Pbkdf2Sha256("password", "salt", 1, 32)),
            "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b");
  EXPECT_EQ(Hex(Pbkdf2Sha256("password", "salt", 4096, 32)),
            "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a");
  EXPECT_EQ(Pbkdf2Sha256("password", "salt", 1, 16).size(), 16u);
}

TEST(CryptoKdfTest, HexIsLowercase) {
  EXPECT_EQ(Hex(std::string("\x00\x0f\xab\xff", 4)), "000fabff");
  EXPECT_EQ(Hex(""), "");
}

// ---- Secrets at rest ----

class CryptoKeyringTest : public ::testing::Test {
 protected:
  Keyring ring_ = Keyring::FromSecrets("current secret").value();
};

TEST_F(CryptoKeyringTest, RoundTrip) {
  const std::string sealed = ring_.Encrypt("sk-provider-token", "conn-1");
  EXPECT_EQ(sealed.rfind(absl::StrCat("enc:v1:", ring_.current_id(), ":"), 0), 0u) << sealed;
  EXPECT_EQ(sealed.find("sk-provider-token"), std::string::npos);
  EXPECT_EQ(ring_.Decrypt(sealed, "conn-1").value(), "sk-provider-token");
  EXPECT_TRUE(ring_.IsCurrent(sealed));
  EXPECT_EQ(ring_.Decrypt(ring_.Encrypt("", ""), "").value(), "");
  const std::string big(100000, 'x');
  EXPECT_EQ(ring_.Decrypt(ring_.Encrypt(big, "a"), "a").value(), big);
}

TEST_F(CryptoKeyringTest, KeyIdIsHashOfDerivedKey) {
  const std::string key = HkdfSha256("current secret", "", "omniroute storage v1", 32);
  EXPECT_EQ(ring_.current_id(), Sha256Hex(key).substr(0, 8));
}

TEST_F(CryptoKeyringTest, FreshNoncePerCall) {
  EXPECT_NE(ring_.Encrypt("same", "aad"), ring_.Encrypt("same", "aad"));
}

TEST_F(CryptoKeyringTest, TamperedCiphertextFails) {
  const std::string sealed = ring_.Encrypt("secret value", "conn-1");
  const size_t colon = sealed.rfind(':');
  const std::string payload = Base64UrlDecode(sealed.substr(colon + 1)).value();
  // Flip one byte in the nonce, the ciphertext and the tag in turn.
  for (size_t at : {size_t{0}, size_t{12}, payload.size() - 1}) {
    std::string bad = payload;
    bad[at] ^= 0x01;
    auto r = ring_.Decrypt(sealed.substr(0, colon + 1) + Base64UrlEncode(bad), "conn-1");
    ASSERT_FALSE(r.ok()) << "flipped byte " << at;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_EQ(r.status().message().find("secret value"), std::string::npos);
  }
  // Truncating the tag fails too.
  std::string cut = payload;
  cut.pop_back();
  EXPECT_FALSE(ring_.Decrypt(sealed.substr(0, colon + 1) + Base64UrlEncode(cut), "conn-1").ok());
}

TEST_F(CryptoKeyringTest, WrongAadFails) {
  const std::string sealed = ring_.Encrypt("secret value", "conn-1");
  auto r = ring_.Decrypt(sealed, "conn-2");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(ring_.Decrypt(sealed, "").ok());
}

TEST_F(CryptoKeyringTest, UnknownKeyIdFails) {
  const Keyring other = Keyring::FromSecrets("another secret").value();
  auto r = ring_.Decrypt(other.Encrypt("x", "a"), "a");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(ring_.IsCurrent(other.Encrypt("x", "a")));
}

TEST_F(CryptoKeyringTest, MalformedFails) {
  const std::string id = ring_.current_id();
  for (const std::string& bad :
       {std::string("plain text"), std::string("enc:v2:") + id + ":AAAA", std::string("enc:v1:"),
        std::string("enc:v1:") + id, std::string("enc:v1::AAAA"),
        absl::StrCat("enc:v1:", id, ":not base64!"),
        absl::StrCat("enc:v1:", id, ":", Base64UrlEncode(std::string(27, 'a')))}) {
    auto r = ring_.Decrypt(bad, "");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    // IsCurrent looks at the key id only: a payload error shows when it is decrypted.
    if (bad.rfind(absl::StrCat("enc:v1:", id, ":"), 0) != 0) {
      EXPECT_FALSE(ring_.IsCurrent(bad)) << bad;
    }
  }
}

TEST_F(CryptoKeyringTest, EmptySecretRejected) {
  EXPECT_EQ(Keyring::FromSecrets("").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(CryptoKeyringTest, RotationKeepsOldKeysReadable) {
  const std::string old_sealed = ring_.Encrypt("old value", "conn-1");
  const Keyring rotated = Keyring::FromSecrets("new secret", {"", "current secret"}).value();
  EXPECT_NE(rotated.current_id(), ring_.current_id());
  EXPECT_EQ(rotated.Decrypt(old_sealed, "conn-1").value(), "old value");
  EXPECT_FALSE(rotated.IsCurrent(old_sealed));
  const std::string new_sealed = rotated.Encrypt("new value", "conn-1");
  EXPECT_TRUE(rotated.IsCurrent(new_sealed));
  // The old keyring cannot read values made with the new key.
  EXPECT_EQ(ring_.Decrypt(new_sealed, "conn-1").status().code(), absl::StatusCode::kNotFound);
}

class CryptoLoadKeyringTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SaveEnv("STORAGE_ENCRYPTION_KEY", saved_key_);
    SaveEnv("STORAGE_ENCRYPTION_KEY_PREVIOUS", saved_previous_);
    dir_ = std::filesystem::temp_directory_path() / ("crypto_test_" + RandomHex(8));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    RestoreEnv("STORAGE_ENCRYPTION_KEY", saved_key_);
    RestoreEnv("STORAGE_ENCRYPTION_KEY_PREVIOUS", saved_previous_);
    std::filesystem::remove_all(dir_);
  }
  static void SaveEnv(const char* name, std::optional<std::string>& saved) {
    if (const char* v = getenv(name)) saved = v;
    unsetenv(name);
  }
  static void RestoreEnv(const char* name, const std::optional<std::string>& saved) {
    if (saved) {
      setenv(name, saved->c_str(), 1);
    } else {
      unsetenv(name);
    }
  }
  std::filesystem::path dir_;
  std::optional<std::string> saved_key_, saved_previous_;
};

TEST_F(CryptoLoadKeyringTest, CreatesAndReusesStoredKey) {
  const Keyring first = LoadKeyring(dir_.string()).value();
  const std::filesystem::path file = dir_ / ".secrets" / "storage.key";
  ASSERT_TRUE(std::filesystem::exists(file));
  struct stat st {};
  ASSERT_EQ(stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const std::string sealed = first.Encrypt("value", "id");
  const Keyring second = LoadKeyring(dir_.string()).value();
  EXPECT_EQ(second.current_id(), first.current_id());
  EXPECT_EQ(second.Decrypt(sealed, "id").value(), "value");
}

TEST_F(CryptoLoadKeyringTest, EnvironmentKeyAndPrevious) {
  setenv("STORAGE_ENCRYPTION_KEY", "old-key", 1);
  const std::string old_sealed = LoadKeyring(dir_.string()).value().Encrypt("value", "id");
  EXPECT_FALSE(std::filesystem::exists(dir_ / ".secrets" / "storage.key"));

  setenv("STORAGE_ENCRYPTION_KEY", "new-key", 1);
  EXPECT_EQ(LoadKeyring(dir_.string()).value().Decrypt(old_sealed, "id").status().code(),
            absl::StatusCode::kNotFound);
  setenv("STORAGE_ENCRYPTION_KEY_PREVIOUS", ",other-key,,old-key,", 1);
  const Keyring ring = LoadKeyring(dir_.string()).value();
  EXPECT_EQ(ring.current_id(), Keyring::FromSecrets("new-key").value().current_id());
  EXPECT_EQ(ring.Decrypt(old_sealed, "id").value(), "value");
  EXPECT_FALSE(ring.IsCurrent(old_sealed));
}

// ---- Passwords ----

TEST(CryptoPasswordTest, HashAndVerify) {
  const std::string stored = HashPassword("correct horse", 1000);
  EXPECT_EQ(stored.rfind("pbkdf2-sha256$1000$", 0), 0u) << stored;
  EXPECT_TRUE(VerifyPassword("correct horse", stored));
  EXPECT_FALSE(VerifyPassword("correct horse ", stored));
  EXPECT_FALSE(VerifyPassword("", stored));
  EXPECT_NE(HashPassword("correct horse", 1000), stored);  // salted
}

TEST(CryptoPasswordTest, DefaultIterations) {
  const std::string stored = HashPassword("pw");
  EXPECT_EQ(stored.rfind("pbkdf2-sha256$100000$", 0), 0u) << stored;
  EXPECT_TRUE(VerifyPassword("pw", stored));
}

TEST(CryptoPasswordTest, MatchesIndependentDerivation) {
  // The stored hash is PBKDF2 over the stored salt, so other implementations can verify it.
  const std::string salt = "0123456789abcdef";
  const std::string stored = absl::StrCat("pbkdf2-sha256$1$", Base64UrlEncode(salt), "$",
                                          Base64UrlEncode(Pbkdf2Sha256("pw", salt, 1, 32)));
  EXPECT_TRUE(VerifyPassword("pw", stored));
}

TEST(CryptoPasswordTest, MalformedStoredValuesNeverMatch) {
  const std::string salt = Base64UrlEncode("saltsaltsaltsalt");
  for (const std::string& stored : {
           std::string(""),
           std::string("pw"),
           absl::StrCat("pbkdf2-sha256$1$", salt, "$"),  // empty hash would match anything
           absl::StrCat("pbkdf2-sha256$1$", salt, "$",
                        Base64UrlEncode(Pbkdf2Sha256("pw", "saltsaltsaltsalt", 1, 4))),
           absl::StrCat("pbkdf2-sha1$1$", salt, "$",
                        Base64UrlEncode(Pbkdf2Sha256("pw", "saltsaltsaltsalt", 1, 32))),
           absl::StrCat("pbkdf2-sha256$0$", salt, "$",
                        Base64UrlEncode(Pbkdf2Sha256("pw", "saltsaltsaltsalt", 1, 32))),
           absl::StrCat("pbkdf2-sha256$x$", salt, "$",
                        Base64UrlEncode(Pbkdf2Sha256("pw", "saltsaltsaltsalt", 1, 32))),
           absl::StrCat("pbkdf2-sha256$1$", salt, "$!!", "$extra"),
       }) {
    EXPECT_FALSE(VerifyPassword("pw", stored)) << stored;
  }
}

// ---- Client API keys ----

TEST(CryptoClientKeyTest, GenerateAndCheck) {
  const GeneratedKey k = GenerateClientKey("0123456789abcdef", "key-secret");
  ASSERT_EQ(k.key_id.size(), 32u);
  EXPECT_EQ(k.key_id.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(k.key.rfind(absl::StrCat("sk-0123456789abcdef-", k.key_id, "-"), 0), 0u) << k.key;
  EXPECT_EQ(k.key.size(), 3 + 16 + 1 + 32 + 1 + 8u);
  EXPECT_TRUE(CheckClientKey(k.key, "key-secret"));
  EXPECT_FALSE(CheckClientKey(k.key, "other-secret"));
  std::set<std::string> ids;
  for (int i = 0; i < 10; ++i) ids.insert(GenerateClientKey("m", "s").key_id);
  EXPECT_GT(ids.size(), 1u);  // random, not derived from the inputs
}

TEST(CryptoClientKeyTest, KnownChecksum) {
  // PBKDF2-SHA256("0123456789abcdef" + "a1b2c3", "key-secret", 1000, 32), first 8 hex.
  EXPECT_TRUE(CheckClientKey("sk-0123456789abcdef-a1b2c3-8f25676a", "key-secret"));
  // A machine id with dashes: split from the right.
  EXPECT_TRUE(CheckClientKey("sk-my-host-01-a1b2c3-c1757380", "key-secret"));
}

TEST(CryptoClientKeyTest, AlteredKeysFail) {
  const std::string good = "sk-0123456789abcdef-a1b2c3-8f25676a";
  for (const std::string& bad : {
           std::string("sk-0123456789abcdef-a1b2c3-8f25676b"),  // checksum
           std::string("sk-0123456789abcdef-a1b2c4-8f25676a"),  // key id
           std::string("sk-0123456789abcdee-a1b2c3-8f25676a"),  // machine id
           std::string("sk-0123456789abcdef-A1B2C3-8f25676a"),  // not lowercase
           std::string("sk-0123456789abcdef-a1b2c3-8F25676A"),
           std::string("pk-0123456789abcdef-a1b2c3-8f25676a"),
           std::string("sk-0123456789abcdef-a1b2c3-8f25676a0"),
           std::string("sk-0123456789abcdefa1b2c3-8f25676a"),
           std::string("sk-a1b2c38f25676a"),
           std::string("sk-"),
           std::string(""),
       }) {
    EXPECT_FALSE(CheckClientKey(bad, "key-secret")) << bad;
  }
  EXPECT_TRUE(CheckClientKey(good, "key-secret"));
}

TEST(CryptoClientKeyTest, MachineIdIsStableHex) {
  const std::string id = MachineId("fallback secret");
  EXPECT_EQ(id.size(), 16u);
  EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(MachineId("fallback secret"), id);
  if (!std::filesystem::exists("/etc/machine-id")) {
    EXPECT_EQ(id, Sha256Hex("fallback secret").substr(0, 16));
  }
}

TEST(CryptoClientKeyTest, MaskSecret) {
  EXPECT_EQ(MaskSecret("sk-0123456789abcdef-a1b2c3-8f25676a"), "sk-012…676a");
  EXPECT_EQ(MaskSecret("0123456789abcdef"), "012345…cdef");
  EXPECT_EQ(MaskSecret("0123456789abcde"), "****");
  EXPECT_EQ(MaskSecret(""), "****");
}

// ---- JWT ----

constexpr int64_t kNow = 1'700'000'000;

TEST(CryptoJwtTest, KnownToken) {
  // Computed independently (Python hmac/base64).
  constexpr char kToken[] =
      "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhZG1pbiIsImV4cCI6MjAwMDAwMDAwMH0."
      "yVwxtkUVA8TFWNew0TF2wIdGB7k_isp2_IGeUULveEo";
  EXPECT_EQ(SignJwt(R"({"sub":"admin","exp":2000000000})", "s3cret"), kToken);
  EXPECT_EQ(VerifyJwt(kToken, "s3cret", kNow).value(), R"({"sub":"admin","exp":2000000000})");
}

TEST(CryptoJwtTest, SignVerify) {
  const std::string claims = absl::StrCat(R"({"sub":"admin","exp":)", kNow + 60, "}");
  const std::string token = SignJwt(claims, "secret");
  EXPECT_EQ(VerifyJwt(token, "secret", kNow).value(), claims);
  auto wrong = VerifyJwt(token, "other", kNow);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_FALSE(VerifyJwt(token, "", kNow).ok());
}

TEST(CryptoJwtTest, Expiry) {
  const std::string token = SignJwt(absl::StrCat(R"({"exp":)", kNow, "}"), "secret");
  EXPECT_TRUE(VerifyJwt(token, "secret", kNow - 1).ok());
  EXPECT_EQ(VerifyJwt(token, "secret", kNow).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_FALSE(VerifyJwt(token, "secret", kNow + 1).ok());
  const std::string fractional = SignJwt(absl::StrCat(R"({"exp":)", kNow, ".5}"), "secret");
  EXPECT_TRUE(VerifyJwt(fractional, "secret", kNow).ok());
  EXPECT_FALSE(VerifyJwt(fractional, "secret", kNow + 1).ok());
}

TEST(CryptoJwtTest, ExpRequiredAndNumeric) {
  EXPECT_FALSE(VerifyJwt(SignJwt(R"({"sub":"admin"})", "secret"), "secret", kNow).ok());
  EXPECT_FALSE(VerifyJwt(SignJwt(R"({"exp":"2000000000"})", "secret"), "secret", kNow).ok());
  EXPECT_FALSE(VerifyJwt(SignJwt(R"({"exp":null})", "secret"), "secret", kNow).ok());
  EXPECT_FALSE(VerifyJwt(SignJwt(R"([1,2])", "secret"), "secret", kNow).ok());
  EXPECT_FALSE(VerifyJwt(SignJwt("not json", "secret"), "secret", kNow).ok());
}

TEST(CryptoJwtTest, TamperedClaimsFail) {
  const std::string token = SignJwt(R"({"sub":"user","exp":2000000000})", "secret");
  const size_t first = token.find('.');
  const size_t second = token.find('.', first + 1);
  const std::string forged =
      absl::StrCat(token.substr(0, first + 1),
                   Base64UrlEncode(R"({"sub":"admin","exp":2000000000})"), token.substr(second));
  EXPECT_EQ(VerifyJwt(forged, "secret", kNow).status().code(), absl::StatusCode::kUnauthenticated);
  std::string flipped = token;
  flipped.back() = flipped.back() == 'A' ? 'B' : 'A';
  EXPECT_FALSE(VerifyJwt(flipped, "secret", kNow).ok());
}

TEST(CryptoJwtTest, OtherAlgorithmsRejected) {
  const std::string claims = Base64UrlEncode(R"({"sub":"admin","exp":2000000000})");
  for (const char* header :
       {R"({"alg":"none","typ":"JWT"})", R"({"alg":"HS512","typ":"JWT"})",
        R"({"alg":"hs256","typ":"JWT"})", R"({"typ":"JWT"})", R"({"alg":null})", "[]"}) {
    const std::string input = absl::StrCat(Base64UrlEncode(header), ".", claims);
    // Unsigned, and signed with the right secret over the foreign header: both rejected.
    EXPECT_FALSE(VerifyJwt(input + ".", "secret", kNow).ok()) << header;
    const std::string signed_token =
        absl::StrCat(input, ".", Base64UrlEncode(HmacSha256("secret", input)));
    auto r = VerifyJwt(signed_token, "secret", kNow);
    ASSERT_FALSE(r.ok()) << header;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << header;
  }
}

TEST(CryptoJwtTest, MalformedTokens) {
  const std::string token = SignJwt(R"({"exp":2000000000})", "secret");
  for (const std::string& bad : {
           std::string(""),
           std::string("abc"),
           token.substr(0, token.rfind('.')),  // two segments
           token + ".",                        // four segments
           token + ".xyz",
           "!!!" + token.substr(token.find('.')),  // bad base64url header
           token.substr(0, token.rfind('.') + 1) + "***",
       }) {
    auto r = VerifyJwt(bad, "secret", kNow);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

// ---- PKCE ----

TEST(CryptoPkceTest, Rfc7636AppendixB) {
  EXPECT_EQ(PkceChallenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
}

TEST(CryptoPkceTest, VerifierShape) {
  std::set<std::string> seen;
  for (int i = 0; i < 20; ++i) {
    const std::string v = PkceVerifier();
    EXPECT_EQ(v.size(), 43u);
    EXPECT_EQ(
        v.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"),
        std::string::npos)
        << v;
    seen.insert(v);
  }
  EXPECT_EQ(seen.size(), 20u);
}

}  // namespace
}  // namespace omniroute::crypto
