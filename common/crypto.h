#pragma once

// Cryptography of the accounts service and the edge's admin sessions, on OpenSSL's libcrypto:
// AES-256-GCM for secrets at rest (key from HKDF-SHA256), PBKDF2 for passwords and client key
// checksums, HS256 JWTs for admin sessions, PKCE for OAuth flows.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace omniroute::crypto {

// ---- Encodings ----
std::string Base64UrlEncode(std::string_view data);  // no padding
absl::StatusOr<std::string> Base64UrlDecode(std::string_view text);  // padding optional
std::string Base64Encode(std::string_view data);  // standard alphabet, padded
absl::StatusOr<std::string> Base64Decode(std::string_view text);

// `n` random bytes from the OS.
std::string RandomBytes(size_t n);

// ---- Key derivation ----
// HKDF-SHA256 (RFC 5869) of `ikm`, `length` bytes.
std::string HkdfSha256(std::string_view ikm, std::string_view salt, std::string_view info,
                       size_t length);
// PBKDF2-HMAC-SHA256, `length` bytes.
std::string Pbkdf2Sha256(std::string_view password, std::string_view salt, int iterations,
                         size_t length);
std::string HmacSha256(std::string_view key, std::string_view data);  // 32 raw bytes
std::string Hex(std::string_view bytes);                             // lowercase

// ---- Secrets at rest ----
// The keys that encrypt stored secrets: the current one and, during a rotation, older ones
// that can still decrypt. A key's id is the first 8 hex characters of SHA-256 over the key.
class Keyring {
 public:
  // Keys derived with HKDF-SHA256 (info "omniroute storage v1") from `secret` (any non-empty
  // string) and from each of `previous`.
  static absl::StatusOr<Keyring> FromSecrets(std::string_view secret,
                                             const std::vector<std::string>& previous = {});

  // "enc:v1:<key id>:<base64url(nonce 12 | ciphertext | tag 16)>". `aad` binds the value to
  // where it is stored (e.g. the connection id) and must be given again to decrypt.
  std::string Encrypt(std::string_view plaintext, std::string_view aad) const;
  // Errors: not in the enc:v1 format, unknown key id, or authentication failure.
  absl::StatusOr<std::string> Decrypt(std::string_view sealed, std::string_view aad) const;
  // Whether `sealed` was encrypted with the current key (false = re-encrypt on rotation).
  bool IsCurrent(std::string_view sealed) const;
  const std::string& current_id() const { return keys_.front().id; }

 private:
  struct Key {
    std::string id;
    std::string bytes;  // 32
  };
  std::vector<Key> keys_;  // current first
};

// The keyring of a data directory: STORAGE_ENCRYPTION_KEY (and the comma-separated
// STORAGE_ENCRYPTION_KEY_PREVIOUS during a rotation) when set; otherwise a random key kept in
// `data_dir`/.secrets/storage.key, created with mode 0600 on first use.
absl::StatusOr<Keyring> LoadKeyring(const std::string& data_dir);

// ---- Passwords ----
// "pbkdf2-sha256$<iterations>$<salt b64url>$<hash b64url>".
std::string HashPassword(std::string_view password, int iterations = 100000);
bool VerifyPassword(std::string_view password, std::string_view stored);

// ---- Client API keys (OmniRoute's format) ----
// "sk-{machine id}-{key id: 32 hex}-{checksum: 8 hex}", the checksum being the first 8 hex
// characters of PBKDF2-SHA256(machine id + key id, `secret`, 1000 iterations, 32 bytes).
// OmniRoute's layout with a 128-bit random key id (OmniRoute's 6-hex ids are also accepted
// by CheckClientKey): the key stays unguessable even to someone holding `secret`.
struct GeneratedKey {
  std::string key;
  std::string key_id;  // the 32 hex characters
};
GeneratedKey GenerateClientKey(std::string_view machine_id, std::string_view secret);
// Whether `key` is in the generated format with a checksum made with `secret`.
bool CheckClientKey(std::string_view key, std::string_view secret);
// A stable id of this installation for new keys: 16 hex characters of SHA-256 over
// /etc/machine-id when readable, else over `fallback` (e.g. the API key secret).
std::string MachineId(std::string_view fallback);
// "sk-abcd…wxyz": enough to recognise a key, never enough to use it.
std::string MaskSecret(std::string_view secret);

// ---- Admin sessions: JWT HS256 (RFC 7519) ----
// Signs `claims_json` (an object) with `secret`.
std::string SignJwt(std::string_view claims_json, std::string_view secret);
// The claims of a token signed with `secret` whose "exp" (seconds) is after `now_s`; errors
// for a malformed token, another algorithm, a bad signature or an expired token.
absl::StatusOr<std::string> VerifyJwt(std::string_view token, std::string_view secret,
                                      int64_t now_s);

// ---- OAuth PKCE (RFC 7636) ----
std::string PkceVerifier();                            // 43-128 characters, unreserved set
std::string PkceChallenge(std::string_view verifier);  // S256: base64url(SHA-256(verifier))

}  // namespace omniroute::crypto
