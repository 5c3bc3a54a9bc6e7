#include "common/crypto.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <array>
#include <boost/json.hpp>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/secrets.h"
#include "common/strings.h"

namespace omniroute::crypto {
namespace {

constexpr std::string_view kSealedPrefix = "enc:v1:";
constexpr std::string_view kStorageInfo = "omniroute storage v1";
constexpr size_t kKeyBytes = 32;
constexpr size_t kNonceBytes = 12;
constexpr size_t kTagBytes = 16;
constexpr size_t kKeyIdChars = 8;
constexpr std::string_view kPasswordScheme = "pbkdf2-sha256";
constexpr int kMaxPasswordIterations = 10'000'000;  // bounds the work a stored hash can ask for
constexpr int kClientKeyIterations = 1000;
constexpr std::string_view kJwtHeader = R"({"alg":"HS256","typ":"JWT"})";

// OpenSSL failing on valid arguments (allocation, no entropy) leaves nothing safe to return.
[[noreturn]] void CryptoFailure(const char* what) {
  std::fprintf(stderr, "omniroute crypto: %s failed\n", what);
  std::abort();
}

const unsigned char* Bytes(std::string_view s) {
  // Some OpenSSL calls treat a null pointer as "not given" even with a zero length.
  static const unsigned char kEmpty = 0;
  return s.empty() ? &kEmpty : reinterpret_cast<const unsigned char*>(s.data());
}

unsigned char* MutableBytes(std::string& s) { return reinterpret_cast<unsigned char*>(s.data()); }

std::string Sha256(std::string_view data) {
  std::string out(EVP_MAX_MD_SIZE, '\0');
  unsigned int len = 0;
  if (EVP_Digest(Bytes(data), data.size(), MutableBytes(out), &len, EVP_sha256(), nullptr) != 1) {
    CryptoFailure("SHA-256");
  }
  out.resize(len);
  return out;
}

// ---- Base64 (RFC 4648) ----

constexpr std::string_view kStdAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::string_view kUrlAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string Encode(std::string_view data, std::string_view alphabet, bool pad) {
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    const uint32_t v = static_cast<unsigned char>(data[i]) << 16 |
                       static_cast<unsigned char>(data[i + 1]) << 8 |
                       static_cast<unsigned char>(data[i + 2]);
    out += alphabet[v >> 18];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    out += alphabet[v & 63];
  }
  const size_t rest = data.size() - i;
  if (rest == 1) {
    const uint32_t v = static_cast<unsigned char>(data[i]) << 16;
    out += alphabet[v >> 18];
    out += alphabet[(v >> 12) & 63];
    if (pad) out += "==";
  } else if (rest == 2) {
    const uint32_t v =
        static_cast<unsigned char>(data[i]) << 16 | static_cast<unsigned char>(data[i + 1]) << 8;
    out += alphabet[v >> 18];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    if (pad) out += '=';
  }
  return out;
}

// Strict: only `alphabet`, padding optional but correct when present, no whitespace, and unused
// trailing bits zero, so each byte string has exactly one accepted text.
absl::StatusOr<std::string> Decode(std::string_view text, std::string_view alphabet,
                                   const char* name) {
  std::array<int8_t, 256> value;
  value.fill(-1);
  for (size_t i = 0; i < alphabet.size(); ++i) {
    value[static_cast<unsigned char>(alphabet[i])] = static_cast<int8_t>(i);
  }
  std::string_view body = text;
  size_t padding = 0;
  while (!body.empty() && body.back() == '=' && padding < 2) {
    body.remove_suffix(1);
    ++padding;
  }
  if ((padding > 0 && text.size() % 4 != 0) || body.size() % 4 == 1) {
    return absl::InvalidArgumentError(absl::StrCat("invalid ", name, ": bad length"));
  }
  std::string out;
  out.reserve(body.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : body) {
    const int8_t v = value[static_cast<unsigned char>(c)];
    if (v < 0) return absl::InvalidArgumentError(absl::StrCat("invalid ", name, ": bad character"));
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("invalid ", name, ": non-canonical end"));
  }
  return out;
}

// ---- Sealed values ----

struct Sealed {
  std::string_view key_id;
  std::string_view payload;  // base64url
};

absl::StatusOr<Sealed> ParseSealed(std::string_view sealed) {
  if (sealed.substr(0, kSealedPrefix.size()) != kSealedPrefix) {
    return absl::InvalidArgumentError("not an enc:v1 value");
  }
  const std::string_view rest = sealed.substr(kSealedPrefix.size());
  const size_t colon = rest.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    return absl::InvalidArgumentError("enc:v1 value without a key id");
  }
  return Sealed{rest.substr(0, colon), rest.substr(colon + 1)};
}

struct CipherCtxDeleter {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxDeleter>;

std::vector<std::string_view> Split(std::string_view text, char sep) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  for (size_t at; (at = text.find(sep, start)) != std::string_view::npos; start = at + 1) {
    parts.push_back(text.substr(start, at - start));
  }
  parts.push_back(text.substr(start));
  return parts;
}

int IntSize(std::string_view s) {
  if (s.size() > static_cast<size_t>(INT_MAX)) CryptoFailure("size check");
  return static_cast<int>(s.size());
}

bool IsLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string ClientKeyChecksum(std::string_view machine_id, std::string_view key_id,
                              std::string_view secret) {
  const std::string input = absl::StrCat(AV(machine_id), AV(key_id));
  return Hex(Pbkdf2Sha256(input, secret, kClientKeyIterations, 32)).substr(0, 8);
}

std::string JwtSignature(std::string_view signing_input, std::string_view secret) {
  return HmacSha256(secret, signing_input);
}

absl::StatusOr<boost::json::object> ParseJwtObject(std::string_view json, const char* what) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(json, ec);
  if (ec || !v.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("JWT ", what, ": not a JSON object"));
  }
  return std::move(v.as_object());
}

}  // namespace

// ---- Encodings ----

std::string Base64UrlEncode(std::string_view data) { return Encode(data, kUrlAlphabet, false); }

absl::StatusOr<std::string> Base64UrlDecode(std::string_view text) {
  return Decode(text, kUrlAlphabet, "base64url");
}

std::string Base64Encode(std::string_view data) { return Encode(data, kStdAlphabet, true); }

absl::StatusOr<std::string> Base64Decode(std::string_view text) {
  return Decode(text, kStdAlphabet, "base64");
}

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (n > 0 && RAND_bytes(MutableBytes(out), static_cast<int>(n)) != 1) {
    CryptoFailure("RAND_bytes");
  }
  return out;
}

// ---- Key derivation ----

std::string HkdfSha256(std::string_view ikm, std::string_view salt, std::string_view info,
                       size_t length) {
  if (length > 255 * 32) CryptoFailure("HKDF length check");  // RFC 5869's limit
  std::string out(length, '\0');
  if (length == 0) return out;
  EVP_KDF* kdf = EVP_KDF_fetch(nullptr, OSSL_KDF_NAME_HKDF, nullptr);
  if (kdf == nullptr) CryptoFailure("HKDF fetch");
  EVP_KDF_CTX* ctx = EVP_KDF_CTX_new(kdf);
  EVP_KDF_free(kdf);
  if (ctx == nullptr) CryptoFailure("HKDF context");
  char digest[] = "SHA256";
  OSSL_PARAM params[5];
  size_t n = 0;
  params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
  params[n++] = OSSL_PARAM_construct_octet_string(
      OSSL_KDF_PARAM_KEY, const_cast<unsigned char*>(Bytes(ikm)), ikm.size());
  // An absent salt is HashLen zeros (RFC 5869 2.2); OpenSSL does the same when it is not given.
  if (!salt.empty()) {
    params[n++] = OSSL_PARAM_construct_octet_string(
        OSSL_KDF_PARAM_SALT, const_cast<unsigned char*>(Bytes(salt)), salt.size());
  }
  if (!info.empty()) {
    params[n++] = OSSL_PARAM_construct_octet_string(
        OSSL_KDF_PARAM_INFO, const_cast<unsigned char*>(Bytes(info)), info.size());
  }
  params[n] = OSSL_PARAM_construct_end();
  const int ok = EVP_KDF_derive(ctx, MutableBytes(out), out.size(), params);
  EVP_KDF_CTX_free(ctx);
  if (ok != 1) CryptoFailure("HKDF derive");
  return out;
}

std::string Pbkdf2Sha256(std::string_view password, std::string_view salt, int iterations,
                         size_t length) {
  std::string out(length, '\0');
  if (length == 0) return out;
  if (iterations < 1 || length > static_cast<size_t>(INT_MAX)) CryptoFailure("PBKDF2 arguments");
  if (PKCS5_PBKDF2_HMAC(reinterpret_cast<const char*>(Bytes(password)), IntSize(password),
                        Bytes(salt), IntSize(salt), iterations, EVP_sha256(),
                        static_cast<int>(length), MutableBytes(out)) != 1) {
    CryptoFailure("PBKDF2");
  }
  return out;
}

std::string HmacSha256(std::string_view key, std::string_view data) {
  std::string out(EVP_MAX_MD_SIZE, '\0');
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), Bytes(key), IntSize(key), Bytes(data), data.size(), MutableBytes(out),
           &len) == nullptr) {
    CryptoFailure("HMAC-SHA256");
  }
  out.resize(len);
  return out;
}

std::string Hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(bytes.size() * 2, '0');
  for (size_t i = 0; i < bytes.size(); ++i) {
    const auto b = static_cast<unsigned char>(bytes[i]);
    out[2 * i] = kDigits[b >> 4];
    out[2 * i + 1] = kDigits[b & 15];
  }
  return out;
}

// ---- Secrets at rest ----

absl::StatusOr<Keyring> Keyring::FromSecrets(std::string_view secret,
                                             const std::vector<std::string>& previous) {
  if (secret.empty()) return absl::InvalidArgumentError("storage encryption secret is empty");
  Keyring ring;
  auto add = [&ring](std::string_view s) {
    Key key;
    key.bytes = HkdfSha256(s, {}, kStorageInfo, kKeyBytes);
    key.id = Sha256Hex(key.bytes).substr(0, kKeyIdChars);
    for (const Key& k : ring.keys_) {
      if (k.id == key.id) return;  // the same secret given twice
    }
    ring.keys_.push_back(std::move(key));
  };
  add(secret);
  for (const std::string& s : previous) {
    if (!s.empty()) add(s);
  }
  return ring;
}

std::string Keyring::Encrypt(std::string_view plaintext, std::string_view aad) const {
  const Key& key = keys_.front();
  const std::string nonce = RandomBytes(kNonceBytes);
  std::string payload(kNonceBytes + plaintext.size() + kTagBytes, '\0');
  payload.replace(0, kNonceBytes, nonce);
  unsigned char* ct = MutableBytes(payload) + kNonceBytes;

  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceBytes, nullptr) != 1 ||
      EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, Bytes(key.bytes), Bytes(nonce)) != 1 ||
      (!aad.empty() &&
       EVP_EncryptUpdate(ctx.get(), nullptr, &len, Bytes(aad), IntSize(aad)) != 1) ||
      (!plaintext.empty() &&
       EVP_EncryptUpdate(ctx.get(), ct, &len, Bytes(plaintext), IntSize(plaintext)) != 1) ||
      EVP_EncryptFinal_ex(ctx.get(), ct + plaintext.size(), &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes, ct + plaintext.size()) != 1) {
    CryptoFailure("AES-256-GCM encrypt");
  }
  return absl::StrCat(AV(kSealedPrefix), key.id, ":", Base64UrlEncode(payload));
}

absl::StatusOr<std::string> Keyring::Decrypt(std::string_view sealed, std::string_view aad) const {
  auto parsed = ParseSealed(sealed);
  if (!parsed.ok()) return parsed.status();
  const Key* key = nullptr;
  for (const Key& k : keys_) {
    if (k.id == parsed->key_id) {
      key = &k;
      break;
    }
  }
  if (key == nullptr) {
    // Key ids are public (a hash prefix), so naming the one asked for helps the operator.
    return absl::NotFoundError(absl::StrCat("no storage key with id ",
                                            AV(parsed->key_id.substr(0, kKeyIdChars)),
                                            " (was STORAGE_ENCRYPTION_KEY changed without setting "
                                            "STORAGE_ENCRYPTION_KEY_PREVIOUS?)"));
  }
  auto payload = Base64UrlDecode(parsed->payload);
  if (!payload.ok()) return absl::InvalidArgumentError("enc:v1 value: payload is not base64url");
  if (payload->size() < kNonceBytes + kTagBytes) {
    return absl::InvalidArgumentError("enc:v1 value: payload too short");
  }
  const std::string_view data = *payload;
  const std::string_view nonce = data.substr(0, kNonceBytes);
  const std::string_view ciphertext =
      data.substr(kNonceBytes, data.size() - kNonceBytes - kTagBytes);
  std::string tag(data.substr(data.size() - kTagBytes));
  std::string plaintext(ciphertext.size(), '\0');

  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  if (!ctx || EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceBytes, nullptr) != 1 ||
      EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, Bytes(key->bytes), Bytes(nonce)) != 1 ||
      (!aad.empty() &&
       EVP_DecryptUpdate(ctx.get(), nullptr, &len, Bytes(aad), IntSize(aad)) != 1) ||
      (!ciphertext.empty() && EVP_DecryptUpdate(ctx.get(), MutableBytes(plaintext), &len,
                                                Bytes(ciphertext), IntSize(ciphertext)) != 1) ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagBytes, tag.data()) != 1) {
    CryptoFailure("AES-256-GCM decrypt setup");
  }
  if (EVP_DecryptFinal_ex(ctx.get(), MutableBytes(plaintext) + ciphertext.size(), &len) != 1) {
    OPENSSL_cleanse(plaintext.data(), plaintext.size());
    return absl::DataLossError(
        "enc:v1 value failed authentication (tampered, or stored under another id)");
  }
  return plaintext;
}

bool Keyring::IsCurrent(std::string_view sealed) const {
  auto parsed = ParseSealed(sealed);
  return parsed.ok() && parsed->key_id == keys_.front().id;
}

absl::StatusOr<Keyring> LoadKeyring(const std::string& data_dir) {
  auto secret = EnvOrStoredSecret("STORAGE_ENCRYPTION_KEY", data_dir, "storage.key", "");
  if (!secret.ok()) return secret.status();
  std::vector<std::string> previous;
  if (const char* v = std::getenv("STORAGE_ENCRYPTION_KEY_PREVIOUS"); v != nullptr) {
    for (std::string_view item : Split(v, ',')) {
      item = SV(absl::StripAsciiWhitespace(AV(item)));
      if (!item.empty()) previous.emplace_back(item);
    }
  }
  return Keyring::FromSecrets(*secret, previous);
}

// ---- Passwords ----

std::string HashPassword(std::string_view password, int iterations) {
  const std::string salt = RandomBytes(16);
  const std::string hash = Pbkdf2Sha256(password, salt, iterations, 32);
  return absl::StrCat(AV(kPasswordScheme), "$", iterations, "$", Base64UrlEncode(salt), "$",
                      Base64UrlEncode(hash));
}

bool VerifyPassword(std::string_view password, std::string_view stored) {
  const std::vector<std::string_view> parts = Split(stored, '$');
  if (parts.size() != 4 || parts[0] != kPasswordScheme) return false;
  int iterations = 0;
  if (!absl::SimpleAtoi(AV(parts[1]), &iterations) || iterations < 1 ||
      iterations > kMaxPasswordIterations) {
    return false;
  }
  auto salt = Base64UrlDecode(parts[2]);
  auto hash = Base64UrlDecode(parts[3]);
  // A short (or empty) stored hash would match too many passwords.
  if (!salt.ok() || !hash.ok() || hash->size() < 16 || hash->size() > 64) return false;
  return SecureEquals(Pbkdf2Sha256(password, *salt, iterations, hash->size()), *hash);
}

// ---- Client API keys ----

GeneratedKey GenerateClientKey(std::string_view machine_id, std::string_view secret) {
  GeneratedKey out;
  out.key_id = RandomHex(16);
  out.key = absl::StrCat("sk-", AV(machine_id), "-", out.key_id, "-",
                         ClientKeyChecksum(machine_id, out.key_id, secret));
  return out;
}

bool CheckClientKey(std::string_view key, std::string_view secret) {
  if (key.substr(0, 3) != "sk-") return false;
  std::string_view rest = key.substr(3);
  // From the right: the machine id is free-form, key id and checksum are fixed-width hex.
  const size_t checksum_dash = rest.rfind('-');
  if (checksum_dash == std::string_view::npos) return false;
  const std::string_view checksum = rest.substr(checksum_dash + 1);
  rest = rest.substr(0, checksum_dash);
  const size_t id_dash = rest.rfind('-');
  if (id_dash == std::string_view::npos) return false;
  const std::string_view key_id = rest.substr(id_dash + 1);
  const std::string_view machine_id = rest.substr(0, id_dash);
  if ((key_id.size() != 6 && key_id.size() != 32) || !IsLowerHex(key_id) || checksum.size() != 8 || !IsLowerHex(checksum)) {
    return false;
  }
  return SecureEquals(ClientKeyChecksum(machine_id, key_id, secret), checksum);
}

std::string MachineId(std::string_view fallback) {
  std::string source;
  if (std::ifstream in("/etc/machine-id"); in) {
    std::stringstream ss;
    ss << in.rdbuf();
    source = std::string(absl::StripAsciiWhitespace(ss.str()));
  }
  if (source.empty()) source = std::string(fallback);
  return Sha256Hex(source).substr(0, 16);
}

std::string MaskSecret(std::string_view secret) {
  if (secret.size() < 16) return "****";
  return absl::StrCat(AV(secret.substr(0, 6)), "…", AV(secret.substr(secret.size() - 4)));
}

// ---- Admin sessions: JWT HS256 ----

std::string SignJwt(std::string_view claims_json, std::string_view secret) {
  std::string token = absl::StrCat(Base64UrlEncode(kJwtHeader), ".", Base64UrlEncode(claims_json));
  const std::string signature = JwtSignature(token, secret);
  absl::StrAppend(&token, ".", Base64UrlEncode(signature));
  return token;
}

absl::StatusOr<std::string> VerifyJwt(std::string_view token, std::string_view secret,
                                      int64_t now_s) {
  if (secret.empty()) return absl::FailedPreconditionError("JWT secret is empty");
  const std::vector<std::string_view> parts = Split(token, '.');
  if (parts.size() != 3) return absl::InvalidArgumentError("JWT must have three segments");

  auto header_json = Base64UrlDecode(parts[0]);
  if (!header_json.ok()) return absl::InvalidArgumentError("JWT header: bad base64url");
  auto header = ParseJwtObject(*header_json, "header");
  if (!header.ok()) return header.status();
  const boost::json::value* alg = header->if_contains("alg");
  if (alg == nullptr || !alg->is_string() || alg->get_string() != "HS256") {
    return absl::InvalidArgumentError("JWT algorithm is not HS256");
  }

  auto signature = Base64UrlDecode(parts[2]);
  if (!signature.ok()) return absl::InvalidArgumentError("JWT signature: bad base64url");
  const std::string_view signing_input = token.substr(0, parts[0].size() + 1 + parts[1].size());
  if (!SecureEquals(JwtSignature(signing_input, secret), *signature)) {
    return absl::UnauthenticatedError("JWT signature mismatch");
  }

  // Signed by us from here on; the claims are still checked, not trusted to be well formed.
  auto claims_json = Base64UrlDecode(parts[1]);
  if (!claims_json.ok()) return absl::InvalidArgumentError("JWT claims: bad base64url");
  auto claims = ParseJwtObject(*claims_json, "claims");
  if (!claims.ok()) return claims.status();
  const boost::json::value* exp = claims->if_contains("exp");
  if (exp == nullptr || !exp->is_number()) {
    return absl::InvalidArgumentError("JWT has no numeric exp");
  }
  bool expired = true;
  if (exp->is_int64()) {
    expired = exp->get_int64() <= now_s;
  } else if (exp->is_uint64()) {
    expired = now_s >= 0 && exp->get_uint64() <= static_cast<uint64_t>(now_s);
  } else {
    const double d = exp->get_double();
    expired = !std::isfinite(d) || d <= static_cast<double>(now_s);
  }
  if (expired) return absl::UnauthenticatedError("JWT expired");
  return std::move(*claims_json);
}

// ---- OAuth PKCE ----

std::string PkceVerifier() { return Base64UrlEncode(RandomBytes(32)); }

std::string PkceChallenge(std::string_view verifier) { return Base64UrlEncode(Sha256(verifier)); }

}  // namespace omniroute::crypto
