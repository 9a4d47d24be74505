#pragma once
// The device agent: enrollment with a birth certificate, re-enrollment and renewal with the IDC, and
// the device's state directory, written so that a crash leaves the old or the new credentials, never
// a mix (each generation in its own directory, `current` switched by an atomic symlink rename).
//
//   <dir>/device.json          server URL, where the BC key lives, PIN source (never a secret)
//   <dir>/trust.pem            the factory-provisioned trust anchor(s) for the server and cacerts
//   <dir>/bc.pem, bc.key       the birth certificate chain and (file keys) its key, 0600
//   <dir>/ukid-secret          Option 3: the UKID secret, 0600
//   <dir>/current -> idc-<serial>/   idc.pem, cacerts.pem, and key.pem (0600) or key.uri (PKCS#11)
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "hallmark/core/clock.hpp"
#include "hallmark/core/result.hpp"
#include "hallmark/core/secret.hpp"
#include "hallmark/crypto/key.hpp"
#include "hallmark/device/est_client.hpp"
#include "hallmark/x509/certificate.hpp"

namespace hallmark::device {

// What `hallmark vendor provision` writes per chip (docs/vendor.md, "Chip image").
struct ChipImage {
  std::string unique_id;
  std::string part_number;
  std::string mode;  // idc | bc | bc-secret
  std::string reel;
  crypto::PrivateKey key;
  std::vector<x509::Certificate> chain;  // the device certificate first
  std::optional<Secret> ukid_secret;     // bc-secret only

  [[nodiscard]] static Result<ChipImage> parse(std::string_view json, std::string_view name);
  [[nodiscard]] static Result<ChipImage> load(const std::string& path);
};

// The UKID as the RA computes it: lowercase hex SHA-256 of the BC's DER SubjectPublicKeyInfo.
[[nodiscard]] std::string ukid_of(const x509::Certificate& bc);

// A key reference: "file:PATH" (or a bare path) or an RFC 7512 "pkcs11:" URI; a PKCS#11 PIN comes
// from `pin_source` ("file:PATH", "env:NAME") or the URI's pin-source attribute.
[[nodiscard]] Result<std::shared_ptr<const crypto::Signer>> load_key(const std::string& reference,
                                                                     const std::string& pin_source = {});

struct RetryPolicy {
  std::chrono::milliseconds max_wait{std::chrono::minutes{5}};  // give up once this much has passed
  std::chrono::milliseconds first_backoff{500};
  std::chrono::milliseconds max_backoff{std::chrono::minutes{2}};
};

struct AgentOptions {
  std::string dir;  // the state directory
  std::chrono::milliseconds timeout{30000};
  RetryPolicy retry;
  // Where new IDC keys are made: empty for a file (P-256, 0600) in the state directory, or a
  // "pkcs11:token=...;" URI of a token that generates them (they never leave it).
  std::string new_key_token;
  std::string pin_source;
  bool pop_linking = false;  // challengePassword = channel binding; an Option 3 secret goes in HTTP Basic
  bool keep_key = false;     // re-enroll with the current key (the alias must allow it)
  bool tls13_only = false;
  const Clock* clock = nullptr;  // default: the system clock
};

// What `enroll` starts from: the chip's birth certificate and the server.
struct Enrollment {
  ServerUrl server;
  std::vector<x509::Certificate> trust;
  std::vector<x509::Certificate> bc_chain;  // BC first
  std::string bc_key;                       // key reference (file: or pkcs11:)
  std::optional<Secret> ukid_secret;
};

struct Credentials {
  x509::Certificate idc;
  std::vector<x509::Certificate> cacerts;
  std::string key;  // reference of the IDC key
  std::string directory;
};

// Enrollment through the BC: records the inputs in the state directory (so a later `recover` can use
// them), then cacerts (must chain to the trust anchor), csrattrs, a new key, simpleenroll; the IDC
// must carry the new key and chain to cacerts before it is installed.
[[nodiscard]] Result<Credentials> enroll(const Enrollment& enrollment, const AgentOptions& options);
// simplereenroll authenticated by the current IDC: same subject and SAN, new key unless keep_key.
[[nodiscard]] Result<Credentials> reenroll(const AgentOptions& options);
// Enrollment again through the BC recorded by `enroll` (once the IDCs expired past the grace period,
// when the alias allows recovery).
[[nodiscard]] Result<Credentials> recover(const AgentOptions& options);

[[nodiscard]] Result<Credentials> load_credentials(const std::string& dir);

struct RenewalPolicy {
  // Renew when less than this is left; default: the last third of the lifetime.
  std::optional<std::chrono::seconds> before;
  bool force = false;  // renew now, also a no-expiry IDC
};
// When the IDC is due for renewal; nullopt: never (no expiry and not forced).
[[nodiscard]] std::optional<Seconds> renewal_time(const x509::Certificate& idc, const RenewalPolicy& policy,
                                                  Seconds now);

struct StatusReport {
  std::string subject;
  std::string issuer;
  std::string serial;
  Seconds not_before{};
  Seconds not_after{};
  bool no_expiry = false;
  std::optional<Seconds> renew_at;
  bool verifies = false;
  std::string verify_error;
  std::string key;
  std::string server;
};
[[nodiscard]] Result<StatusReport> status(const AgentOptions& options, const RenewalPolicy& policy);

}  // namespace hallmark::device
