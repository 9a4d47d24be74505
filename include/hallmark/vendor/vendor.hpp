#pragma once
// The silicon vendor's provisioning station (DESIGN.md §1): a home of its own with its own keys and
// database, sub-CAs the OEM signs (BYORoT), and reels of chips for Options 1-3 with a signed manifest
// in Microchip's JWS format. One function per `hallmark vendor` command; formats in docs/vendor.md.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hallmark/core/clock.hpp"
#include "hallmark/core/progress.hpp"
#include "hallmark/core/result.hpp"

namespace hallmark::vendor {

// ---- hallmark vendor init ----

struct InitOptions {
  std::filesystem::path home;  // must not hold a vendor.toml yet
  std::string organization = "Example Silicon";
  std::string organizational_unit = "Secure Products Group";
  std::string distributor;  // empty: the organization
  std::string distributor_unit = "Direct";
  // Where key passphrases come from: "file:PATH" (relative to the home) or "env:NAME"; empty: a random
  // one is generated into secrets/key-passphrase.
  std::string passphrase_source;
  // Option 3: a generic BC CA (self-signed root + issuing CA) shared by all the vendor's customers.
  bool generic_bc_ca = false;
};

struct InitSummary {
  std::filesystem::path home;
  std::string signer_subject;  // "CN=Example Silicon Manifest Signer,O=Example Silicon"
  std::string signer_kid;      // base64url of the signer's SubjectKeyIdentifier
  std::string signer_x5t;      // base64url SHA-256 of the signer certificate DER
  std::optional<std::string> generic_bc_ca_subject;
  std::vector<std::string> files;  // relative to home, in creation order
};

[[nodiscard]] Result<InitSummary> init(const InitOptions& options, const Clock& clock);

// ---- hallmark vendor request-subca ----

struct RequestSubcaOptions {
  std::filesystem::path home;
  std::string role;           // "bc" | "idc"
  std::string oem;            // the customer, for the CN: "<vendor> BC CA for <oem>"
  std::filesystem::path out;  // CSR file (PEM); empty: <home>/subca/<role>/request.csr
};

struct RequestSubcaSummary {
  std::string role;
  std::string subject;
  std::filesystem::path csr;
  std::filesystem::path key;  // encrypted, stays at the vendor
};

// Makes the sub-CA key (kept here, encrypted) and a CSR for the OEM to sign with
// `hallmark ca sign-subca --csr FILE --role bc|idc`.
[[nodiscard]] Result<RequestSubcaSummary> request_subca(const RequestSubcaOptions& options);

// ---- hallmark vendor install-subca ----

struct InstallSubcaOptions {
  std::filesystem::path home;
  std::string role;                 // "bc" | "idc"
  std::filesystem::path chain_pem;  // the sub-CA certificate first, then its issuers up to the OEM root
};

struct InstallSubcaSummary {
  std::string role;
  std::string subject;
  std::string issuer;
  std::string root_subject;
  Seconds not_after{};
  std::size_t chain_length = 0;
  std::filesystem::path chain;  // where it was installed
};

// Checks that the certificate carries the pending key, is a CA and chains to the last certificate of
// the file (a self-signed root), then installs it.
[[nodiscard]] Result<InstallSubcaSummary> install_subca(const InstallSubcaOptions& options,
                                                        const Clock& clock);

// ---- hallmark vendor provision ----

enum class Mode {
  idc,        // Option 1: an 802.1AR IDC from the vendor-held IDC sub-CA of the OEM
  bc,         // Option 2: a birth certificate from the vendor-held BC sub-CA of the OEM
  bc_secret,  // Option 3: a BC from the vendor's generic BC CA plus a random UKID secret
};
// "idc" | "bc" | "bc-secret"; else invalid_input "unknown mode 'x' (modes: idc, bc, bc-secret)".
[[nodiscard]] Result<Mode> parse_mode(std::string_view name);
[[nodiscard]] std::string_view to_string(Mode mode) noexcept;

struct ProvisionOptions {
  std::filesystem::path home;
  Mode mode = Mode::bc;
  std::uint64_t count = 0;
  std::string part_number;        // "ATECC608B-TFLXTLS"
  std::string model;              // empty: the part number up to its first '-'
  std::string reel;               // reel id: [A-Za-z0-9][A-Za-z0-9._-]{0,63}, never reused
  std::filesystem::path out_dir;  // gets <reel>.json and chips/<uniqueId>.json
  bool images = true;             // write one chip image per device
  unsigned threads = 0;           // producers; 0: one per core
  // Option 1 IDC fields (DESIGN.md §2): CN and hardwareModuleName hwType. O is the OEM's, taken
  // from the issuer of the installed IDC sub-CA.
  std::string product;  // empty: the part number
  std::string product_oid = "1.3.6.1.4.1.55555.1.1";
  ProgressBar::Mode progress = ProgressBar::Mode::automatic;
};

struct ProvisionSummary {
  std::uint64_t chips = 0;
  Mode mode = Mode::bc;
  std::string reel;
  double elapsed_seconds = 0;
  double chips_per_second = 0;
  std::filesystem::path manifest;
  std::string manifest_sha256;
  std::uint64_t files = 0;  // manifest + chip images
  std::string issuer;       // subject of the CA that issued the chips' certificates
  std::string signer_kid;
};

// One reel: per chip a P-256 key, a unique id and a certificate; a signed manifest entry each.
// Recorded in the vendor database (one manifest, one device per chip) in one transaction at the end.
[[nodiscard]] Result<ProvisionSummary> provision(const ProvisionOptions& options, const Clock& clock);

// "Provisioned 20000 chips (mode bc, reel R1) in 1.2s: 16667 chips/s; 1 file: out/R1.json"
[[nodiscard]] std::string describe(const ProvisionSummary& summary);

// ---- hallmark vendor issue-ocsp-delegate ----

struct OcspDelegateOptions {
  std::filesystem::path home;
  std::string role = "idc";   // the installed sub-CA whose certificates the OEM will answer for
  std::filesystem::path csr;  // the OEM's request (`hallmark ocsp request`), PEM or DER
  std::filesystem::path out;  // the delegate certificate, then the sub-CA chain (PEM)
};

struct OcspDelegateSummary {
  std::string subject;
  std::string issuer;
  std::string serial_hex;
  Seconds not_after{};
  std::filesystem::path out;
};

// Option 1: a delegated OCSP responder certificate (id-kp-OCSPSigning, id-pkix-ocsp-nocheck, profile
// ocsp-responder) for the OEM's key, issued by the vendor-held sub-CA, so that the OEM answers OCSP
// for the IDCs this station issued. See docs/revocation.md.
[[nodiscard]] Result<OcspDelegateSummary> issue_ocsp_delegate(const OcspDelegateOptions& options,
                                                              const Clock& clock);

}  // namespace hallmark::vendor
